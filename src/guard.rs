//! A boundary for panics in dependencies. tract looks up tensors and attributes by the names a
//! model file gives and panics when a malformed file names something that is not there (found
//! by fuzzing the loader, see `fuzz/`). [`catch`] turns such a panic into an error, without the
//! panic message on stderr; any other panic is reported as usual.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;

use anyhow::{anyhow, Result};

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Installs a panic hook that stays silent inside [`catch`] and otherwise calls the hook that
/// was in place. Call it once, at start-up.
pub fn install_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !CATCHING.with(Cell::get) {
            previous(info);
        }
    }));
}

/// Runs `work`, turning a panic inside it into the error "the model is malformed (tract:
/// message)".
pub fn catch<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    let outer = CATCHING.with(|catching| catching.replace(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(work));
    CATCHING.with(|catching| catching.set(outer));
    result.unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        Err(anyhow!("the model is malformed (tract: {message})"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panics_become_errors_and_results_pass_through() {
        install_hook();
        let err = catch(|| -> Result<()> { panic!("no entry found for key") });
        assert_eq!(
            err.unwrap_err().to_string(),
            "the model is malformed (tract: no entry found for key)"
        );
        assert_eq!(catch(|| Ok(7)).unwrap(), 7);
        assert!(!CATCHING.with(Cell::get), "the flag is reset");
    }
}
