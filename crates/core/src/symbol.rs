//! Interned strings for the few text fields the views group by (source, channel, campaign,
//! content, opportunity, owner, reason): a fact carries 4-byte symbols instead of strings, so
//! millions of facts stay small and copyable.

use serde::{Deserialize, Serialize};

/// An interned string; [`Symbol::NONE`] when the field was absent.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Symbol(u32);

impl Symbol {
    pub const NONE: Symbol = Symbol(0);

    pub fn is_none(self) -> bool {
        self == Symbol::NONE
    }

    pub fn is_some(self) -> bool {
        self != Symbol::NONE
    }

    /// The symbol's number, for packed encodings.
    pub(crate) const fn index(self) -> u32 {
        self.0
    }

    /// The symbol with this number (from [`Symbol::index`]).
    pub(crate) const fn from_index(index: u32) -> Symbol {
        Symbol(index)
    }
}

/// The table of interned strings of one projection. Symbols are handed out in order and never
/// change, so the stored table only ever grows at its end.
///
/// The names lie end to end in one buffer, and the index holds symbols alone, hashed by their
/// name: a history of ten million events has a few hundred thousand names (pages, campaigns,
/// opportunities), which a vector of strings and a map keyed by a second copy of each held in
/// about 25 MB, and this layout in about a third of that.
#[derive(Debug, Clone)]
pub struct Symbols {
    /// Every name, one after the other.
    text: String,
    /// Where each symbol's name ends in `text`; a name starts where the one before ends.
    ends: Vec<usize>,
    /// Every symbol but `NONE`, found by its name's hash.
    index: hashbrown::HashTable<Symbol>,
    /// Symbols below this were stored already.
    pub(crate) saved: usize,
}

impl Default for Symbols {
    fn default() -> Self {
        Symbols {
            text: String::new(),
            // `NONE`, whose name is empty (and not in the index).
            ends: vec![0],
            index: hashbrown::HashTable::new(),
            saved: 1,
        }
    }
}

fn hash_of(name: &str) -> u64 {
    use std::hash::BuildHasher;
    rustc_hash::FxBuildHasher.hash_one(name)
}

/// Symbol `symbol`'s name, in the buffer and ends of a table.
fn name_in<'a>(text: &'a str, ends: &[usize], symbol: Symbol) -> &'a str {
    let index = symbol.0 as usize;
    let start = if index == 0 { 0 } else { ends[index - 1] };
    &text[start..ends[index]]
}

impl Symbols {
    /// The symbol of `text`, interning it when new.
    pub fn intern(&mut self, text: &str) -> Symbol {
        let hash = hash_of(text);
        self.find(text, hash)
            .unwrap_or_else(|| self.push(text, hash))
    }

    /// The symbol whose name is `text` (`hash` being its hash), if there is one.
    fn find(&self, text: &str, hash: u64) -> Option<Symbol> {
        self.index
            .find(hash, |s| name_in(&self.text, &self.ends, *s) == text)
            .copied()
    }

    /// Gives `text` the next symbol (it is not in the table).
    fn push(&mut self, text: &str, hash: u64) -> Symbol {
        let Symbols {
            text: names,
            ends,
            index,
            ..
        } = self;
        let symbol = Symbol(u32::try_from(ends.len()).expect("invariant: fewer than 4G symbols"));
        names.push_str(text);
        ends.push(names.len());
        index.insert_unique(hash, symbol, |s| hash_of(name_in(names, ends, *s)));
        symbol
    }

    pub fn intern_option(&mut self, text: Option<&str>) -> Symbol {
        text.map_or(Symbol::NONE, |text| self.intern(text))
    }

    /// The symbol of `text` if it was interned; `NONE` otherwise.
    pub fn lookup(&self, text: &str) -> Symbol {
        self.find(text, hash_of(text)).unwrap_or(Symbol::NONE)
    }

    /// The text of a symbol; `None` for `NONE` or a symbol of another table.
    pub fn name(&self, symbol: Symbol) -> Option<&str> {
        if symbol.is_none() || symbol.0 as usize >= self.ends.len() {
            return None;
        }
        Some(name_in(&self.text, &self.ends, symbol))
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Puts a stored symbol back at its index; symbols must come back in order.
    pub(crate) fn restore(&mut self, index: u32, text: String) -> Result<(), String> {
        if index as usize != self.ends.len() {
            return Err(format!(
                "symbol {index} out of order: {} symbols restored so far",
                self.ends.len()
            ));
        }
        let hash = hash_of(&text);
        if let Some(earlier) = self.find(&text, hash) {
            return Err(format!(
                "symbol {index} repeats the name of symbol {}",
                earlier.0
            ));
        }
        self.push(&text, hash);
        self.saved = self.ends.len();
        Ok(())
    }

    pub(crate) fn unsaved(&self) -> impl Iterator<Item = (u32, &str)> {
        (self.saved..self.ends.len()).map(|index| {
            let symbol = Symbol(index as u32);
            (symbol.0, name_in(&self.text, &self.ends, symbol))
        })
    }
}

/// A set of attributes in an [`AttributeTable`]; [`AttributesId::NONE`] is the set where every
/// field is absent.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct AttributesId(u32);

impl AttributesId {
    pub const NONE: AttributesId = AttributesId(0);
}

/// Every distinct set of attributes (`journey::Attributes`) the facts of one projection carry,
/// each stored once. Events share them (the touches of one campaign, the facts of one
/// opportunity at one amount), so a fact holds a 4-byte id instead of 40 bytes of attributes:
/// at ten million facts that is 300 MB. Like [`Symbols`], ids are handed out in order and
/// never change, so the stored table only grows at its end.
#[derive(Debug, Clone)]
pub struct AttributeTable {
    sets: Vec<crate::journey::Attributes>,
    index: rustc_hash::FxHashMap<crate::journey::Attributes, AttributesId>,
    /// Ids below this were stored already.
    pub(crate) saved: usize,
}

impl Default for AttributeTable {
    fn default() -> Self {
        let none = crate::journey::Attributes::default();
        AttributeTable {
            sets: vec![none],
            index: std::iter::once((none, AttributesId::NONE)).collect(),
            saved: 1,
        }
    }
}

impl AttributeTable {
    /// The id of `attributes`, adding them when new.
    pub fn intern(&mut self, attributes: crate::journey::Attributes) -> AttributesId {
        if let Some(id) = self.index.get(&attributes) {
            return *id;
        }
        let id = AttributesId(
            u32::try_from(self.sets.len()).expect("invariant: fewer than 4G attribute sets"),
        );
        self.sets.push(attributes);
        self.index.insert(attributes, id);
        id
    }

    /// The attributes of an id this table handed out (or restored).
    pub fn get(&self, id: AttributesId) -> &crate::journey::Attributes {
        &self.sets[id.0 as usize]
    }

    /// Whether the id is one of this table's.
    pub(crate) fn holds(&self, id: AttributesId) -> bool {
        (id.0 as usize) < self.sets.len()
    }

    /// Distinct sets held, the empty one included.
    pub fn len(&self) -> usize {
        self.sets.len()
    }

    /// Always false: the empty set is always held.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Puts a stored set back at its id; sets must come back in order.
    pub(crate) fn restore(
        &mut self,
        index: u32,
        attributes: crate::journey::Attributes,
    ) -> Result<(), String> {
        if index as usize != self.sets.len() {
            return Err(format!(
                "attribute set {index} out of order: {} sets restored so far",
                self.sets.len()
            ));
        }
        self.index.entry(attributes).or_insert(AttributesId(index));
        self.sets.push(attributes);
        self.saved = self.sets.len();
        Ok(())
    }

    pub(crate) fn unsaved(&self) -> impl Iterator<Item = (u32, &crate::journey::Attributes)> {
        self.sets
            .iter()
            .enumerate()
            .skip(self.saved)
            .map(|(index, set)| (index as u32, set))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_interned_once_and_read_back() {
        let mut symbols = Symbols::default();
        let names: Vec<String> = (0..5_000)
            .map(|n| format!("https://example.com/p/{n}"))
            .collect();
        let interned: Vec<Symbol> = names.iter().map(|name| symbols.intern(name)).collect();
        // Handed out in order, from 1 (0 is NONE).
        assert!(
            interned
                .iter()
                .enumerate()
                .all(|(n, s)| s.0 as usize == n + 1)
        );
        for (name, symbol) in names.iter().zip(&interned) {
            assert_eq!(symbols.intern(name), *symbol, "{name} interned again");
            assert_eq!(symbols.lookup(name), *symbol);
            assert_eq!(symbols.name(*symbol), Some(name.as_str()));
        }
        assert_eq!(symbols.lookup("never interned"), Symbol::NONE);
        assert_eq!(symbols.name(Symbol::NONE), None);
        assert_eq!(symbols.name(Symbol(5_001)), None, "beyond the table");
        // The empty string is a name like any other, not NONE.
        let empty = symbols.intern("");
        assert!(empty.is_some());
        assert_eq!(symbols.name(empty), Some(""));
        assert_eq!(symbols.intern("x"), Symbol(5_002));
    }

    #[test]
    fn a_restored_table_matches_the_one_stored() {
        let mut stored = Symbols::default();
        for name in ["web", "email", "", "webinar-q3"] {
            stored.intern(name);
        }
        let unsaved: Vec<(u32, String)> = stored
            .unsaved()
            .map(|(index, name)| (index, name.to_owned()))
            .collect();
        assert_eq!(unsaved.len(), 4);
        let mut restored = Symbols::default();
        for (index, name) in unsaved.clone() {
            restored.restore(index, name).expect("in order");
        }
        assert_eq!(
            restored.unsaved().count(),
            0,
            "everything restored is saved"
        );
        for (index, name) in &unsaved {
            assert_eq!(restored.lookup(name), Symbol(*index));
        }
        assert_eq!(restored.intern("linkedin"), Symbol(5));
        assert_eq!(
            restored.unsaved().collect::<Vec<_>>(),
            vec![(5, "linkedin")]
        );
        let error = Symbols::default()
            .restore(3, "late".into())
            .expect_err("out of order");
        assert!(error.contains("symbol 3 out of order"), "{error}");
        // A store never holds a name twice: one that does is refused, not half-read.
        let mut twice = Symbols::default();
        twice.restore(1, "web".into()).expect("first");
        let error = twice.restore(2, "web".into()).expect_err("a repeated name");
        assert!(
            error.contains("symbol 2 repeats the name of symbol 1"),
            "{error}"
        );
    }
}
