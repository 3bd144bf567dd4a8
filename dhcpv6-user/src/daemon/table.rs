//! The served-interface table as the receive workers read it: a snapshot the server loop
//! publishes after every sync (netlink change, reload), which each worker picks up between
//! two datagrams. The hot path reads one atomic (the generation) per datagram; only a worker
//! that sees a new generation takes the lock, once, to copy the new `Arc`.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, PoisonError,
    },
};

use super::interfaces::ServedIface;

/// What a worker needs to know of the interfaces to handle a datagram.
#[derive(Default)]
pub(super) struct Table {
    /// Served interfaces present in the kernel, by ifindex.
    pub ifaces: HashMap<u32, ServedIface>,
    /// The relay agent's interfaces: their datagrams go to the server loop, which owns the
    /// agent and the dataplane it reads client MACs from.
    pub agent: HashSet<u32>,
}

/// The current table and its generation.
#[derive(Default)]
pub(super) struct TableCell {
    generation: AtomicU64,
    current: Mutex<Arc<Table>>,
}

impl TableCell {
    /// Replaces the table; workers take it before their next datagram.
    pub fn publish(&self, t: Table) {
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(t);
        // After the swap: a worker that sees the new generation finds the new table (or a
        // later one, and then sees a later generation too).
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// A worker's view of the table, kept current.
    pub fn reader(self: &Arc<Self>) -> TableReader {
        TableReader { cell: Arc::clone(self), seen: u64::MAX, table: Arc::default() }
    }
}

pub(super) struct TableReader {
    cell: Arc<TableCell>,
    seen: u64,
    table: Arc<Table>,
}

impl TableReader {
    /// The newest published table (borrowed: no reference count shared between the workers
    /// is touched per datagram).
    pub fn current(&mut self) -> &Table {
        let g = self.cell.generation.load(Ordering::Acquire);
        if g != self.seen {
            self.table = Arc::clone(&self.cell.current.lock().unwrap_or_else(PoisonError::into_inner));
            self.seen = g;
        }
        &self.table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_sees_each_published_table() {
        let cell = Arc::new(TableCell::default());
        let mut r = cell.reader();
        assert!(r.current().agent.is_empty());
        cell.publish(Table { agent: [7].into(), ..Table::default() });
        assert!(r.current().agent.contains(&7));
        cell.publish(Table { agent: [8].into(), ..Table::default() });
        let mut late = cell.reader();
        assert!(r.current().agent.contains(&8) && late.current().agent.contains(&8));
    }
}
