//! A deserializer adapter that makes structs accept maps only.
//!
//! serde's derived `Deserialize` for a struct also accepts a sequence of its fields in
//! declaration order, so the JSON body `[]` reads as a `Topology` with every field at its
//! default, and `["trunk", null, [10]]` as a port patch. [`Strict`] wraps any [`Deserializer`]
//! and turns `deserialize_struct` into the inner `deserialize_map`. It also wraps every visitor,
//! seed, [`SeqAccess`], [`MapAccess`] and [`EnumAccess`] it hands on, so that structs nested at
//! any depth (a port inside `ports:`, a struct variant of an enum) get the same rule. A
//! sequence where a struct is expected is then refused with the inner format's own message,
//! such as `invalid type: sequence, expected struct Topology`, and the inner format still
//! decorates errors with their position (serde_json, serde_yaml_ng) and path.
//!
//! It is meant for self-describing formats (JSON, YAML): a struct variant is read as the
//! variant's content deserialized as a map.
//!
//! ```
//! use control_api::strict::Strict;
//! use control_api::Vlan;
//! use serde::Deserialize;
//!
//! let mut de = serde_json::Deserializer::from_str(r#"[10, "red"]"#);
//! let err = Vlan::deserialize(Strict(&mut de)).unwrap_err();
//! assert!(err.to_string().starts_with("invalid type: sequence, expected struct Vlan"));
//! let mut de = serde_json::Deserializer::from_str(r#"{"id": 10, "name": "red"}"#);
//! assert_eq!(Vlan::deserialize(Strict(&mut de)).unwrap().id, 10);
//! ```

use std::fmt;

use serde::de::{
    DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};

/// A [`Deserializer`] whose structs (at any depth) accept maps only; see the module docs.
pub struct Strict<D>(pub D);

/// Forwards a `deserialize_*` method to the inner deserializer with the visitor wrapped.
macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*)),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
                self.0.$method($($arg,)* Wrap(visitor))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Strict<D> {
    type Error = D::Error;

    forward! {
        deserialize_any(),
        deserialize_bool(),
        deserialize_i8(),
        deserialize_i16(),
        deserialize_i32(),
        deserialize_i64(),
        deserialize_i128(),
        deserialize_u8(),
        deserialize_u16(),
        deserialize_u32(),
        deserialize_u64(),
        deserialize_u128(),
        deserialize_f32(),
        deserialize_f64(),
        deserialize_char(),
        deserialize_str(),
        deserialize_string(),
        deserialize_bytes(),
        deserialize_byte_buf(),
        deserialize_option(),
        deserialize_unit(),
        deserialize_unit_struct(name: &'static str),
        deserialize_newtype_struct(name: &'static str),
        deserialize_seq(),
        deserialize_tuple(len: usize),
        deserialize_tuple_struct(name: &'static str, len: usize),
        deserialize_map(),
        deserialize_enum(name: &'static str, variants: &'static [&'static str]),
        deserialize_identifier(),
        deserialize_ignored_any(),
    }

    /// The one change: a struct is read as a map, never as a sequence.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(Wrap(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// A visitor whose nested deserializers and accessors are [`Strict`] too.
struct Wrap<V>(V);

/// Forwards `visit_*` methods that carry a plain value.
macro_rules! forward_visit {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(
            fn $method<E: serde::de::Error>(self, v: $ty) -> Result<Self::Value, E> {
                self.0.$method(v)
            }
        )*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    forward_visit! {
        visit_bool(bool),
        visit_i8(i8),
        visit_i16(i16),
        visit_i32(i32),
        visit_i64(i64),
        visit_i128(i128),
        visit_u8(u8),
        visit_u16(u16),
        visit_u32(u32),
        visit_u64(u64),
        visit_u128(u128),
        visit_f32(f32),
        visit_f64(f64),
        visit_char(char),
        visit_str(&str),
        visit_borrowed_str(&'de str),
        visit_string(String),
        visit_bytes(&[u8]),
        visit_borrowed_bytes(&'de [u8]),
        visit_byte_buf(Vec<u8>),
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
        self.0.visit_some(Strict(d))
    }

    fn visit_newtype_struct<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
        self.0.visit_newtype_struct(Strict(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(Strict(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(Strict(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.0.visit_enum(Strict(data))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Strict<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Strict(d))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Strict<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Strict(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Strict<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Strict(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Strict(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Strict<A> {
    type Error = A::Error;
    type Variant = Strict<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        self.0
            .variant_seed(Strict(seed))
            .map(|(value, variant)| (value, Strict(variant)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Strict<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Strict(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrap(visitor))
    }

    /// The inner `struct_variant` may accept a sequence too; read the variant's content as a
    /// map instead (what a self-describing format holds there).
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.newtype_variant_seed(AsMap(visitor))
    }
}

/// A seed that deserializes its value as a map with the visitor of a struct.
struct AsMap<V>(V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for AsMap<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_map(Wrap(self.0))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::Strict;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        a: u16,
        #[serde(default)]
        b: Option<String>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[serde(default)]
        list: Vec<Inner>,
        #[serde(default)]
        one: Option<Inner>,
        #[serde(default)]
        by_name: BTreeMap<String, Inner>,
        #[serde(default)]
        tuple: Option<(u8, Inner)>,
        #[serde(default)]
        wrapped: Option<Newtype>,
        #[serde(default)]
        choice: Option<Choice>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Newtype(Inner);

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "lowercase")]
    enum Choice {
        Plain,
        Boxed(Inner),
        Fields { x: u8, y: u8 },
    }

    fn json<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, String> {
        let mut de = serde_json::Deserializer::from_str(text);
        T::deserialize(Strict(&mut de)).map_err(|e| e.to_string())
    }

    fn yaml<'a, T: Deserialize<'a>>(text: &'a str) -> Result<T, String> {
        T::deserialize(Strict(serde_yaml_ng::Deserializer::from_str(text)))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn plain_serde_accepts_a_sequence_as_a_struct() {
        // What the adapter is for: without it, both are accepted.
        let v: Inner = serde_json::from_str(r#"[7, "x"]"#).unwrap();
        assert_eq!(v.a, 7);
        let v: Outer = serde_json::from_str("[]").unwrap();
        assert!(v.list.is_empty());
    }

    #[test]
    fn a_sequence_for_a_struct_is_refused_at_any_depth() {
        for (text, expected) in [
            ("[]", "invalid type: sequence, expected struct Outer"),
            (
                r#"{"list": [{"a": 1}, [2, "x"]]}"#,
                "invalid type: sequence, expected struct Inner",
            ),
            (
                r#"{"one": [1]}"#,
                "invalid type: sequence, expected struct Inner",
            ),
            (
                r#"{"by_name": {"k": [1]}}"#,
                "invalid type: sequence, expected struct Inner",
            ),
            (
                r#"{"tuple": [1, [1]]}"#,
                "invalid type: sequence, expected struct Inner",
            ),
            (
                r#"{"wrapped": [1]}"#,
                "invalid type: sequence, expected struct Inner",
            ),
            (
                r#"{"choice": {"boxed": [1]}}"#,
                "invalid type: sequence, expected struct Inner",
            ),
            (
                r#"{"choice": {"fields": [1, 2]}}"#,
                "invalid type: sequence, expected struct variant Choice::Fields",
            ),
        ] {
            let err = json::<Outer>(text).expect_err(text);
            assert!(err.starts_with(expected), "{text}: {err}");
        }
    }

    #[test]
    fn maps_still_read_as_before() {
        let text = r#"{"list": [{"a": 1}, {"a": 2, "b": "x"}], "one": {"a": 3},
            "by_name": {"k": {"a": 4}}, "tuple": [5, {"a": 6}], "wrapped": {"a": 7},
            "choice": {"fields": {"x": 1, "y": 2}}}"#;
        let strict: Outer = json(text).unwrap();
        assert_eq!(strict, serde_json::from_str::<Outer>(text).unwrap());
        assert_eq!(strict.list[1].b.as_deref(), Some("x"));
        assert_eq!(strict.choice, Some(Choice::Fields { x: 1, y: 2 }));
        for (text, choice) in [
            (r#"{"choice": "plain"}"#, Choice::Plain),
            (
                r#"{"choice": {"boxed": {"a": 9}}}"#,
                Choice::Boxed(Inner { a: 9, b: None }),
            ),
        ] {
            assert_eq!(json::<Outer>(text).unwrap().choice, Some(choice));
        }
        // Errors other than the shape are the inner format's, unchanged.
        let text = r#"{"list": [{"a": 1, "c": 2}]}"#;
        assert_eq!(
            json::<Outer>(text).unwrap_err(),
            serde_json::from_str::<Outer>(text).unwrap_err().to_string()
        );
    }

    #[test]
    fn yaml_keeps_its_positions_and_paths() {
        let err = yaml::<Outer>("list:\n  - a: 1\n  - [2]\n").unwrap_err();
        assert_eq!(
            err,
            "list[1]: invalid type: sequence, expected struct Inner at line 3 column 5"
        );
        let err = yaml::<Outer>("list:\n  - a: 1\n    c: 2\n").unwrap_err();
        assert!(
            err.starts_with("list[0]: unknown field `c`") && err.ends_with("at line 3 column 5"),
            "{err}"
        );
        // YAML writes enum variants as tags.
        let v: Outer = yaml("one: { a: 1 }\nchoice: !fields { x: 1, y: 2 }\n").unwrap();
        assert_eq!(v.one, Some(Inner { a: 1, b: None }));
        assert_eq!(v.choice, Some(Choice::Fields { x: 1, y: 2 }));
        let err = yaml::<Outer>("choice: !fields [1, 2]\n").unwrap_err();
        assert!(
            err.starts_with(
                "choice: invalid type: sequence, expected struct variant Choice::Fields"
            ),
            "{err}"
        );
        // An empty document is an empty map, as without the adapter.
        assert_eq!(yaml::<Outer>("").unwrap(), yaml::<Outer>("{}").unwrap());
    }

    #[test]
    fn topology_files_get_the_same_rule() {
        use crate::{Topology, TopologyError};
        for (text, expected) in [
            ("[]", "invalid type: sequence, expected struct Topology"),
            (
                "ports:\n  - { name: vm1, kind: tap, mode: access, vlan: 1 }\n  - [vm2, tap, access, 1]\n",
                "ports[1]: invalid type: sequence, expected struct Port at line 3 column 5",
            ),
            (
                r#"{"vlans": [[10, "red"]]}"#,
                "vlans[0]: invalid type: sequence, expected struct Vlan at line 1 column 12",
            ),
        ] {
            match Topology::from_yaml(text) {
                Err(TopologyError::Parse(message)) => assert_eq!(message, expected, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn serde_path_to_error_on_top_names_the_field() {
        let mut de = serde_json::Deserializer::from_str(r#"{"list": [{"a": 1}, [2]]}"#);
        let err = serde_path_to_error::deserialize::<_, Outer>(Strict(&mut de)).unwrap_err();
        assert_eq!(err.path().to_string(), "list[1]");
        assert!(err.inner().to_string().contains("expected struct Inner"));
    }
}
