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
}

/// The table of interned strings of one projection. Symbols are handed out in order and never
/// change, so the stored table only ever grows at its end.
#[derive(Debug, Clone)]
pub struct Symbols {
    names: Vec<String>,
    index: rustc_hash::FxHashMap<String, Symbol>,
    /// Symbols below this were stored already.
    pub(crate) saved: usize,
}

impl Default for Symbols {
    fn default() -> Self {
        Symbols {
            names: vec![String::new()],
            index: rustc_hash::FxHashMap::default(),
            saved: 1,
        }
    }
}

impl Symbols {
    /// The symbol of `text`, interning it when new.
    pub fn intern(&mut self, text: &str) -> Symbol {
        if let Some(symbol) = self.index.get(text) {
            return *symbol;
        }
        let symbol =
            Symbol(u32::try_from(self.names.len()).expect("invariant: fewer than 4G symbols"));
        self.names.push(text.to_owned());
        self.index.insert(text.to_owned(), symbol);
        symbol
    }

    pub fn intern_option(&mut self, text: Option<&str>) -> Symbol {
        text.map_or(Symbol::NONE, |text| self.intern(text))
    }

    /// The symbol of `text` if it was interned; `NONE` otherwise.
    pub fn lookup(&self, text: &str) -> Symbol {
        self.index.get(text).copied().unwrap_or(Symbol::NONE)
    }

    /// The text of a symbol; `None` for `NONE` or a symbol of another table.
    pub fn name(&self, symbol: Symbol) -> Option<&str> {
        if symbol.is_none() {
            return None;
        }
        self.names.get(symbol.0 as usize).map(String::as_str)
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// Puts a stored symbol back at its index; symbols must come back in order.
    pub(crate) fn restore(&mut self, index: u32, text: String) -> Result<(), String> {
        if index as usize != self.names.len() {
            return Err(format!(
                "symbol {index} out of order: {} symbols restored so far",
                self.names.len()
            ));
        }
        self.index.insert(text.clone(), Symbol(index));
        self.names.push(text);
        self.saved = self.names.len();
        Ok(())
    }

    pub(crate) fn unsaved(&self) -> impl Iterator<Item = (u32, &str)> {
        self.names
            .iter()
            .enumerate()
            .skip(self.saved)
            .map(|(index, name)| (index as u32, name.as_str()))
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
