//! Interning of the text many visitors share (page URLs and titles, languages, referrers,
//! campaigns), with reference counts so that nothing is kept after the last visitor using it
//! leaves.
//!
//! # Design
//!
//! A visitor refers to an interned value by a 4-byte [`SymbolId`] instead of a pointer: a page
//! history entry is then a symbol plus a 4-byte time offset, 8 bytes where an `Arc` and a time
//! would take 16. The price is explicit counting: every id a visitor stores holds one reference,
//! taken by [`Interner::intern`] (or [`Interner::retain`]) and given back with
//! [`Interner::release`] when the visitor drops it (a history entry falls off, a visit restarts,
//! the visitor expires). Only the tracker's visitor code stores ids, and it releases them in the
//! few places it drops them.
//!
//! A count that reaches zero does not free the slot at once: the value stays findable, so a page
//! that every visitor left a moment ago and the next visitor opens is revived without work.
//! [`Interner::purge`], called from the sweep, frees the slots still at zero under the write
//! lock (which no reference can be taken during) and puts their ids up for reuse.
//!
//! Lookups and count changes take the read lock only (counts are atomics); the write lock is
//! taken to add a value the table has never seen and to purge.

use std::hash::{BuildHasher, Hash};

use foldhash::quality::RandomState;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use hashbrown::HashTable;
use parking_lot::{RwLock, RwLockReadGuard};

/// A reference to an interned value; `Option<SymbolId>` is 4 bytes too.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct SymbolId(NonZeroU32);

impl SymbolId {
    fn from_index(index: usize) -> SymbolId {
        let id = u32::try_from(index + 1).expect("fewer than 2^32 interned values");
        SymbolId(NonZeroU32::new(id).expect("index + 1 is not zero"))
    }

    fn index(self) -> usize {
        self.0.get() as usize - 1
    }
}

#[derive(Debug)]
struct Slot<T> {
    /// `None` once purged; the slot then waits on the free list.
    value: Option<T>,
    hash: u64,
    refs: AtomicU32,
}

#[derive(Debug)]
struct Table<T> {
    index: HashTable<SymbolId>,
    slots: Vec<Slot<T>>,
    free: Vec<SymbolId>,
}

/// A set of shared values addressed by [`SymbolId`], with reference counts.
#[derive(Debug)]
pub(crate) struct Interner<T> {
    hasher: RandomState,
    table: RwLock<Table<T>>,
    /// Releases that brought a count to zero since the last purge; a purge with none to do
    /// skips the scan.
    zeroed: AtomicUsize,
}

impl<T> Default for Interner<T> {
    fn default() -> Self {
        Interner {
            hasher: RandomState::default(),
            table: RwLock::new(Table {
                index: HashTable::new(),
                slots: Vec::new(),
                free: Vec::new(),
            }),
            zeroed: AtomicUsize::new(0),
        }
    }
}

impl<T> Interner<T> {
    /// The hash [`Interner::intern`] expects for a key; the caller hashes the borrowed form of
    /// the value (e.g. `(url, title)` for a page) the same way for lookups and inserts.
    pub(crate) fn hash<K: Hash + ?Sized>(&self, key: &K) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The id of the value `eq` recognizes, adding `make()` if there is none; either way the
    /// caller now holds one reference.
    pub(crate) fn intern(
        &self,
        hash: u64,
        eq: impl Fn(&T) -> bool,
        make: impl FnOnce() -> T,
    ) -> SymbolId {
        {
            let table = self.table.read();
            if let Some(id) = table.find(hash, &eq) {
                table.slots[id.index()].refs.fetch_add(1, Ordering::Relaxed);
                return id;
            }
        }
        let mut guard = self.table.write();
        let table = &mut *guard;
        if let Some(id) = table.find(hash, &eq) {
            table.slots[id.index()].refs.fetch_add(1, Ordering::Relaxed);
            return id;
        }
        let slot = Slot {
            value: Some(make()),
            hash,
            refs: AtomicU32::new(1),
        };
        let id = match table.free.pop() {
            Some(id) => {
                table.slots[id.index()] = slot;
                id
            }
            None => {
                table.slots.push(slot);
                SymbolId::from_index(table.slots.len() - 1)
            }
        };
        let slots = &table.slots;
        table
            .index
            .insert_unique(hash, id, |id| slots[id.index()].hash);
        id
    }

    /// Takes one more reference to an id the caller already holds.
    pub(crate) fn retain(&self, id: SymbolId) {
        self.table.read().slots[id.index()]
            .refs
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Gives back one reference.
    pub(crate) fn release(&self, id: SymbolId) {
        let previous = self.table.read().slots[id.index()]
            .refs
            .fetch_sub(1, Ordering::Relaxed);
        debug_assert!(previous > 0, "released an interned value nobody held");
        if previous == 1 {
            self.zeroed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A read view for resolving several ids under one lock acquisition.
    pub(crate) fn reader(&self) -> Reader<'_, T> {
        Reader(self.table.read())
    }

    /// Frees every value no visitor refers to; returns how many were freed.
    pub(crate) fn purge(&self) -> usize {
        if self.zeroed.swap(0, Ordering::Relaxed) == 0 {
            return 0;
        }
        let mut guard = self.table.write();
        let table = &mut *guard;
        let mut freed = 0;
        for (index, slot) in table.slots.iter_mut().enumerate() {
            if slot.value.is_none() || slot.refs.load(Ordering::Relaxed) != 0 {
                continue;
            }
            let id = SymbolId::from_index(index);
            if let Ok(entry) = table
                .index
                .find_entry(slot.hash, |candidate| *candidate == id)
            {
                entry.remove();
            }
            slot.value = None;
            table.free.push(id);
            freed += 1;
        }
        // A table that emptied after a burst gives its memory back.
        if table.index.is_empty() {
            table.slots = Vec::new();
            table.free = Vec::new();
            table.index = HashTable::new();
        }
        freed
    }

    /// How many values are held (including those awaiting a purge).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.table.read().index.len()
    }
}

impl<T> Table<T> {
    fn find(&self, hash: u64, eq: impl Fn(&T) -> bool) -> Option<SymbolId> {
        self.index
            .find(hash, |id| {
                self.slots[id.index()].value.as_ref().is_some_and(&eq)
            })
            .copied()
    }
}

/// A read lock on an interner's table.
pub(crate) struct Reader<'a, T>(RwLockReadGuard<'a, Table<T>>);

impl<T> Reader<'_, T> {
    /// The value of an id the caller holds a reference to.
    pub(crate) fn get(&self, id: SymbolId) -> &T {
        self.0.slots[id.index()]
            .value
            .as_ref()
            .expect("a referenced symbol is never purged")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn intern(interner: &Interner<Arc<str>>, text: &str) -> SymbolId {
        interner.intern(
            interner.hash(text),
            |value| **value == *text,
            || text.into(),
        )
    }

    #[test]
    fn equal_values_share_an_id_until_purged() {
        let interner = Interner::<Arc<str>>::default();
        let a = intern(&interner, "https://shop.example/");
        let b = intern(&interner, "https://shop.example/cart");
        assert_eq!(intern(&interner, "https://shop.example/"), a);
        assert_ne!(a, b);
        assert_eq!(&**interner.reader().get(b), "https://shop.example/cart");
        assert_eq!(interner.len(), 2);

        // `a` is held twice: one release keeps it.
        interner.release(a);
        interner.release(b);
        assert_eq!(interner.purge(), 1);
        assert_eq!(interner.len(), 1);
        assert_eq!(&**interner.reader().get(a), "https://shop.example/");

        // A value at zero is revived by a lookup before the purge comes.
        interner.release(a);
        assert_eq!(intern(&interner, "https://shop.example/"), a);
        interner.retain(a);
        interner.release(a);
        interner.release(a);
        assert_eq!(interner.purge(), 1);
        assert_eq!(interner.len(), 0);

        // Freed ids are reused for new values.
        let c = intern(&interner, "https://other.example/");
        assert_eq!(&**interner.reader().get(c), "https://other.example/");
        assert_eq!(interner.purge(), 0, "nothing reached zero");
    }

    #[test]
    fn many_values_survive_table_growth() {
        let interner = Interner::<Arc<str>>::default();
        let ids: Vec<SymbolId> = (0..5_000)
            .map(|i| intern(&interner, &format!("/p/{i}")))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(intern(&interner, &format!("/p/{i}")), *id);
            assert_eq!(&**interner.reader().get(*id), format!("/p/{i}"));
        }
        for id in &ids {
            interner.release(*id);
            interner.release(*id);
        }
        assert_eq!(interner.purge(), 5_000);
        assert_eq!(interner.len(), 0);
    }

    #[test]
    fn symbol_ids_stay_small() {
        assert_eq!(std::mem::size_of::<Option<SymbolId>>(), 4);
    }
}
