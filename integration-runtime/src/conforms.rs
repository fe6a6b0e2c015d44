//! Compile-time checks that user types fit the spec's field types.
//!
//! `#[derive(IntegrationRequest)]` and `#[derive(IntegrationResponse)]` emit
//! `assert_conforms::<kinds::String, _>(&self.text)` for every field; a type
//! that does not fit fails to compile with a message naming the spec type.

use std::borrow::Cow;

use serde::Serialize;

/// Marker types for the spec's field types, used as the `K` of [`Conforms`].
pub mod kinds {
    use std::marker::PhantomData;

    /// The spec type `string`.
    #[derive(Debug)]
    pub struct String;
    /// The spec type `int`.
    #[derive(Debug)]
    pub struct Int;
    /// The spec type `float`.
    #[derive(Debug)]
    pub struct Float;
    /// The spec type `bool`.
    #[derive(Debug)]
    pub struct Bool;
    /// The spec type `timestamp`.
    #[derive(Debug)]
    pub struct Timestamp;
    /// The spec type `uuid`.
    #[derive(Debug)]
    pub struct Uuid;
    /// The spec type `json`.
    #[derive(Debug)]
    pub struct Json;
    /// A nested entity (or an `enum`): any serializable type.
    #[derive(Debug)]
    pub struct Entity;
    /// The spec type `list` with items of kind `K`.
    #[derive(Debug)]
    pub struct List<K>(PhantomData<K>);
    /// An `optional` field of kind `K`.
    #[derive(Debug)]
    pub struct Optional<K>(PhantomData<K>);
}

/// A Rust type that can hold a spec field of kind `K` (see [`kinds`]).
#[diagnostic::on_unimplemented(
    message = "this field's type does not match the spec: expected `{K}`",
    label = "`{Self}` cannot hold a spec `{K}`",
    note = "spec types and the Rust types that fit them: string: String, &str, Box<str>, Cow<str>; \
            int: any integer; float: f32, f64; bool: bool; timestamp: DateTime<Utc>; uuid: Uuid; \
            json: serde_json::Value; list: Vec<_> or a slice; optional: Option<_> (or the plain type); \
            entity or enum: any Serialize type"
)]
pub trait Conforms<K> {}

/// Compiles only when `T` fits the spec kind `K`.
pub fn assert_conforms<K, T: Conforms<K> + ?Sized>(_: &T) {}

use kinds::{Bool, Entity, Float, Int, Json, List, Optional, String as Str, Timestamp, Uuid};

macro_rules! conforms {
    ($kind:ty: $($ty:ty),+ $(,)?) => {
        $(impl Conforms<$kind> for $ty {})+
    };
}

conforms!(Str: String, str, Box<str>, std::sync::Arc<str>);
conforms!(Int: i8, i16, i32, i64, i128, isize, u8, u16, u32, u64, u128, usize);
conforms!(Float: f32, f64);
conforms!(Bool: bool);
conforms!(Timestamp: chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::FixedOffset>);
conforms!(Uuid: uuid::Uuid);
conforms!(Json: serde_json::Value);

impl Conforms<Str> for &str {}
impl Conforms<Str> for Cow<'_, str> {}

impl<T: Serialize + ?Sized> Conforms<Entity> for T {}
impl<T: Serialize + ?Sized> Conforms<Optional<Entity>> for T {}

impl<K, T: Conforms<K>> Conforms<List<K>> for Vec<T> {}
impl<K, T: Conforms<K>> Conforms<List<K>> for [T] {}
impl<K, T: Conforms<K>> Conforms<List<K>> for &[T] {}

/// `Optional<K>` for a leaf kind: the plain type and `Option` of it.
macro_rules! optional {
    ($($kind:ty),+) => {$(
        impl<T: Conforms<$kind> + ?Sized> Conforms<Optional<$kind>> for T {}
        impl<T: Conforms<$kind>> Conforms<Optional<$kind>> for Option<T> {}
    )+};
}

optional!(Str, Int, Float, Bool, Timestamp, Uuid, Json);

impl<K, T: Conforms<List<K>> + ?Sized> Conforms<Optional<List<K>>> for T {}
impl<K, T: Conforms<List<K>>> Conforms<Optional<List<K>>> for Option<T> {}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::BTreeMap;

    use super::kinds::*;
    use super::*;

    #[derive(Serialize)]
    struct Person {
        name: std::string::String,
    }

    #[test]
    fn fitting_types_compile() {
        assert_conforms::<String, _>(&std::string::String::new());
        assert_conforms::<String, _>("text");
        assert_conforms::<String, _>(&"text");
        assert_conforms::<String, _>(&Cow::Borrowed("text"));
        assert_conforms::<String, _>(&Box::<str>::from("text"));
        assert_conforms::<Int, _>(&1_u8);
        assert_conforms::<Int, _>(&1_i64);
        assert_conforms::<Float, _>(&1.0_f32);
        assert_conforms::<Bool, _>(&true);
        assert_conforms::<Timestamp, _>(&chrono::Utc::now());
        assert_conforms::<Uuid, _>(&uuid::Uuid::nil());
        assert_conforms::<Json, _>(&serde_json::json!({}));
        assert_conforms::<Entity, _>(&Person { name: "a".into() });
        assert_conforms::<Entity, _>(&BTreeMap::<std::string::String, i32>::new());
        assert_conforms::<List<Int>, _>(&vec![1_i32]);
        assert_conforms::<List<Int>, _>(&[1_i32][..]);
        assert_conforms::<List<Entity>, _>(&vec![Person { name: "a".into() }]);
        assert_conforms::<List<List<String>>, _>(&vec![vec!["a".to_owned()]]);
        assert_conforms::<Optional<String>, _>(&Some("a".to_owned()));
        assert_conforms::<Optional<String>, _>(&"a".to_owned());
        assert_conforms::<Optional<Int>, _>(&None::<u32>);
        assert_conforms::<Optional<List<Float>>, _>(&Some(vec![1.0_f64]));
        assert_conforms::<Optional<List<Float>>, _>(&vec![1.0_f64]);
        assert_conforms::<Optional<Entity>, _>(&Some(Person { name: "a".into() }));
        assert_conforms::<Optional<Entity>, _>(&Person { name: "a".into() });
        assert_conforms::<List<Optional<Int>>, _>(&vec![Some(1_i64)]);
    }
}
