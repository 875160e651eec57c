//! Maps and sets for the kernel's small collections (a few entries: logged-once keys, a
//! thread's saved `select` sets, blocked calls of a trace), kept as a sorted `Vec`.
//!
//! `BTreeMap` compiles its node code once per key and value type (several KB each under
//! LTO); these compile to a binary search and a `Vec` insert or remove. Lookups are
//! O(log n) and inserts O(n), which is what a collection of a handful of entries wants.
//!
//! Directories ([`crate::fs::DirMap`]) are one too, though a directory can hold many
//! entries: the root filesystem's arrive in name order (the image's archive is sorted),
//! so building it appends; a program creating files under random names pays a move of
//! the entries after each new one (32 bytes each). Measured natively: 10,000 such files
//! in one directory 12 ms against 3 ms with a `BTreeMap`, 50,000 files 245 ms against
//! 21 ms. Lookups take `&str` for `String` keys ([`Borrow`]), as `BTreeMap`'s do.

use alloc::vec::Vec;
use core::borrow::Borrow;
use core::ops::{Bound, RangeBounds};

/// `v` in ascending order, by a heap sort in place. The kernel's sorts go through here:
/// each `sort_unstable` instantiation brings about 4 KB of pattern-defeating quicksort
/// (with its small-sort and heap-sort fallbacks), a `BinaryHeap` under 1 KB.
pub fn sorted<T: Ord>(v: Vec<T>) -> Vec<T> {
    alloc::collections::BinaryHeap::from(v).into_sorted_vec()
}

/// A map from `K` to `V` ordered by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<K: Ord, V> SmallMap<K, V> {
    /// An empty map.
    pub const fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    /// The map of `pairs` in any order (one sort, where inserting each would move the
    /// entries after it); of pairs with equal keys one is kept.
    pub fn from_pairs(pairs: Vec<(K, V)>) -> Self {
        // Ordered by key alone (the values need not be `Ord`).
        struct ByKey<K, V>((K, V));
        impl<K: Ord, V> PartialEq for ByKey<K, V> {
            fn eq(&self, other: &Self) -> bool {
                self.0 .0 == other.0 .0
            }
        }
        impl<K: Ord, V> Eq for ByKey<K, V> {}
        impl<K: Ord, V> PartialOrd for ByKey<K, V> {
            fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl<K: Ord, V> Ord for ByKey<K, V> {
            fn cmp(&self, other: &Self) -> core::cmp::Ordering {
                self.0 .0.cmp(&other.0 .0)
            }
        }
        // Both conversions reuse the allocation (same layout).
        let keyed: Vec<ByKey<K, V>> = pairs.into_iter().map(ByKey).collect();
        let mut pairs: Vec<(K, V)> = sorted(keyed).into_iter().map(|k| k.0).collect();
        pairs.dedup_by(|a, b| a.0 == b.0);
        Self { entries: pairs }
    }

    /// Sets `key` to `value`, returning the value it had.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(core::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }

    /// Makes room for `n` more entries; false when the memory cannot be had.
    pub fn try_reserve(&mut self, n: usize) -> bool {
        self.entries.try_reserve(n).is_ok()
    }

    /// Removes `key`, returning its value.
    pub fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// The value of `key`.
    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// The value of `key`, to change.
    pub fn get_mut<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &mut self.entries[i].1)
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q: Ord + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.find(key).is_ok()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// The entries whose keys lie in `range`, in key order (none when it is empty or
    /// backwards).
    pub fn range<R: RangeBounds<K>>(&self, range: R) -> impl DoubleEndedIterator<Item = (&K, &V)> {
        let e = &self.entries;
        let start = match range.start_bound() {
            Bound::Included(k) => e.partition_point(|(x, _)| x < k),
            Bound::Excluded(k) => e.partition_point(|(x, _)| x <= k),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(k) => e.partition_point(|(x, _)| x <= k),
            Bound::Excluded(k) => e.partition_point(|(x, _)| x < k),
            Bound::Unbounded => e.len(),
        };
        e[start..end.max(start)].iter().map(|(k, v)| (k, v))
    }

    /// The entries in key order, values to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// The values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// The keys in order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }
}

impl<K, V> IntoIterator for SmallMap<K, V> {
    type Item = (K, V);
    type IntoIter = alloc::vec::IntoIter<(K, V)>;

    /// The entries in key order.
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a, K, V> IntoIterator for &'a SmallMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter =
        core::iter::Map<core::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    /// The entries in key order.
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl<K: Ord, V> core::ops::Index<&K> for SmallMap<K, V> {
    type Output = V;

    /// The value of `key`; panics when there is none (as `BTreeMap`'s).
    fn index(&self, key: &K) -> &V {
        self.get(key).expect("no entry for the key")
    }
}

/// A set of `T`, ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallSet<T> {
    map: SmallMap<T, ()>,
}

impl<T> Default for SmallSet<T> {
    fn default() -> Self {
        Self {
            map: SmallMap::default(),
        }
    }
}

impl<T: Ord> SmallSet<T> {
    /// An empty set.
    pub const fn new() -> Self {
        Self {
            map: SmallMap::new(),
        }
    }

    /// Adds `value`; whether it was new.
    pub fn insert(&mut self, value: T) -> bool {
        self.map.insert(value, ()).is_none()
    }

    /// Whether `value` is in the set.
    pub fn contains(&self, value: &T) -> bool {
        self.map.contains_key(value)
    }

    /// Removes `value`; whether it was there.
    pub fn remove(&mut self, value: &T) -> bool {
        self.map.remove(value).is_some()
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The smallest value.
    pub fn first(&self) -> Option<&T> {
        self.map.entries.first().map(|(v, _)| v)
    }

    /// The values from `lo` to `hi` (both included), in order.
    pub fn range(&self, lo: &T, hi: &T) -> impl Iterator<Item = &T> {
        let e = &self.map.entries;
        let start = e.partition_point(|(v, _)| v < lo);
        let end = e.partition_point(|(v, _)| v <= hi).max(start);
        e[start..end].iter().map(|(v, _)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_orders_ascending_and_keeps_duplicates() {
        assert_eq!(sorted(alloc::vec![5, 3, 9, 1, 3, 0]), [0, 1, 3, 3, 5, 9]);
        assert_eq!(sorted(Vec::<u64>::new()), Vec::<u64>::new());
        let big: Vec<u32> = (0..1000).map(|i| (i * 7919) % 1000).collect();
        assert_eq!(sorted(big), (0..1000).collect::<Vec<u32>>());
    }

    #[test]
    fn a_map_made_from_unordered_pairs_is_ordered_with_one_value_per_key() {
        let m = SmallMap::from_pairs(alloc::vec![(3, 'c'), (1, 'a'), (3, 'x'), (2, 'b')]);
        assert_eq!(m.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(m.get(&1), Some(&'a'));
        assert!(matches!(m.get(&3), Some('c' | 'x')));
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn map_keeps_one_value_per_key_in_order() {
        let mut m = SmallMap::new();
        assert_eq!(m.insert(5u32, "five"), None);
        assert_eq!(m.insert(1, "one"), None);
        assert_eq!(m.insert(3, "three"), None);
        assert_eq!(m.insert(3, "THREE"), Some("three"));
        assert_eq!(m.len(), 3);
        assert_eq!(m.get(&3), Some(&"THREE"));
        assert_eq!(m.get(&4), None);
        *m.get_mut(&1).unwrap() = "uno";
        let keys: Vec<u32> = m.keys().copied().collect();
        assert_eq!(keys, [1, 3, 5]);
        let values: Vec<&str> = m.values().copied().collect();
        assert_eq!(values, ["uno", "THREE", "five"]);
        assert_eq!(m.remove(&3), Some("THREE"));
        assert_eq!(m.remove(&3), None);
        assert!(m.contains_key(&1) && !m.contains_key(&3));
        assert_eq!(m.get(&1), Some(&"uno"));
        for (_, v) in m.iter_mut() {
            *v = "x";
        }
        assert!(m.iter().all(|(_, v)| *v == "x") && !m.is_empty());
    }

    #[test]
    fn map_ranges_follow_their_bounds() {
        let mut m = SmallMap::new();
        for k in [10u64, 20, 30, 40] {
            m.insert(k, k / 10);
        }
        let keys = |it: &mut dyn Iterator<Item = (&u64, &u64)>| -> Vec<u64> {
            it.map(|(k, _)| *k).collect()
        };
        assert_eq!(keys(&mut m.range(20..40)), [20, 30]);
        assert_eq!(keys(&mut m.range(20..=40)), [20, 30, 40]);
        assert_eq!(keys(&mut m.range(..=25)), [10, 20]);
        assert_eq!(keys(&mut m.range(21..)), [30, 40]);
        assert_eq!(
            keys(&mut m.range(core::ops::Range { start: 35, end: 15 })),
            [] as [u64; 0],
            "backwards: empty"
        );
        assert_eq!(m.range(..=25).next_back(), Some((&20, &2)));
        assert_eq!(m.iter().next_back(), Some((&40, &4)));
        assert_eq!(m[&30], 3);
        assert_eq!((&m).into_iter().count(), 4);
        let all: Vec<(u64, u64)> = m.into_iter().collect();
        assert_eq!(all, [(10, 1), (20, 2), (30, 3), (40, 4)]);
    }

    #[test]
    fn set_says_whether_a_value_was_new() {
        let mut s = SmallSet::new();
        assert!(s.is_empty());
        assert!(s.insert(7u64));
        assert!(!s.insert(7));
        assert!(s.insert(2));
        assert!(s.contains(&2) && s.contains(&7) && !s.contains(&3));
        assert_eq!(s.len(), 2);
        assert!(s.remove(&7));
        assert!(!s.remove(&7));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn set_ranges_include_both_ends() {
        let mut s = SmallSet::new();
        assert_eq!(s.first(), None);
        for v in [(2u64, 1u32), (1, 9), (2, 0), (3, 5), (2, 7)] {
            s.insert(v);
        }
        assert_eq!(s.first(), Some(&(1, 9)));
        let twos: Vec<_> = s.range(&(2, 0), &(2, u32::MAX)).copied().collect();
        assert_eq!(twos, [(2, 0), (2, 1), (2, 7)]);
        let upto: Vec<_> = s.range(&(0, 0), &(2, 1)).copied().collect();
        assert_eq!(upto, [(1, 9), (2, 0), (2, 1)]);
        assert_eq!(s.range(&(4, 0), &(9, 0)).count(), 0);
        assert_eq!(s.range(&(3, 0), &(1, 0)).count(), 0, "an empty range");
    }
}
