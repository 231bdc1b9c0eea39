//! The connections being served, and which of them are waiting for a whole request: its
//! headers, or its body. When all `--max-connections` are taken, a new connection takes the
//! place of the one that has waited longest without sending a whole request: connections that
//! dribble their headers or their bodies can hold the service only until better ones come.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::oneshot;

/// The open connections, bounded in number.
#[derive(Debug)]
pub struct Connections {
    max: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    next: u64,
    slots: HashMap<u64, Slot>,
}

/// One open connection.
#[derive(Debug)]
struct Slot {
    /// Since when it has waited for a whole request (headers and body); `None` while one is
    /// served.
    waiting: Option<Instant>,
    /// Closes it when sent (or dropped).
    evict: oneshot::Sender<()>,
}

/// A connection's place among the open ones, given up when dropped.
#[derive(Debug)]
pub struct Admitted {
    connections: Arc<Connections>,
    id: u64,
}

impl Connections {
    /// Room for `max` connections at once.
    pub fn new(max: usize) -> Arc<Connections> {
        Arc::new(Connections { max: max.max(1), open: Mutex::default() })
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A place for a new connection, waiting for its first request, and what resolves when it
    /// must close; or `None` when every place is held by a connection serving a request.
    /// Where all are taken, the connection that has waited longest for its headers is closed.
    pub fn admit(self: &Arc<Self>) -> Option<(Admitted, oneshot::Receiver<()>)> {
        let mut open = self.open();
        if open.slots.len() >= self.max {
            let oldest = open
                .slots
                .iter()
                .filter_map(|(&id, slot)| Some((slot.waiting?, id)))
                .min()
                .map(|(_, id)| id)?;
            if let Some(slot) = open.slots.remove(&oldest) {
                let _ = slot.evict.send(());
            }
        }
        let id = open.next;
        open.next += 1;
        let (evict, evicted) = oneshot::channel();
        open.slots.insert(id, Slot { waiting: Some(Instant::now()), evict });
        Some((Admitted { connections: Arc::clone(self), id }, evicted))
    }

    /// How many connections are open.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.open().slots.len()
    }
}

impl Admitted {
    /// Marks the connection as serving a request whose body is in (`true`), or as waiting for
    /// the next one (`false`).
    pub fn serving(&self, serving: bool) {
        if let Some(slot) = self.connections.open().slots.get_mut(&self.id) {
            slot.waiting = if serving { None } else { Some(Instant::now()) };
        }
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.connections.open().slots.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_house_closes_the_longest_waiting_connection() {
        let connections = Connections::new(2);
        let (first, mut first_closed) = connections.admit().unwrap();
        let (second, mut second_closed) = connections.admit().unwrap();
        second.serving(true);
        let (third, _) = connections.admit().expect("the waiting one makes room");
        assert_eq!(connections.len(), 2);
        assert_eq!(first_closed.try_recv(), Ok(()));
        assert!(matches!(second_closed.try_recv(), Err(oneshot::error::TryRecvError::Empty)));
        third.serving(true);
        assert!(connections.admit().is_none(), "both serve a request");
        drop(second);
        assert_eq!(connections.len(), 1);
        drop(first);
        assert!(connections.admit().is_some());
    }
}
