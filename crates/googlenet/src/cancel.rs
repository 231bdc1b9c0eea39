//! Stopping long work from outside: a [`Cancel`] is shared by whoever may stop the work (a
//! request that timed out, a client gone, a signal) and the work, which looks at it between
//! its steps (a batch, a row of occlusions) and stops there with [`Error::Cancelled`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};

/// A flag that stops the work it is given to. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag not yet raised.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Stops the work at its next step.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the work was stopped.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Error::Cancelled)` once the work was stopped, for `?` between its steps.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag() {
        let cancel = Cancel::new();
        let seen = cancel.clone();
        assert_eq!(seen.check(), Ok(()));
        cancel.cancel();
        assert!(seen.is_cancelled());
        assert_eq!(seen.check(), Err(Error::Cancelled));
    }
}
