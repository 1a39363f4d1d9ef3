//! Fields added at the end of a version 1 message: a message of an older peer ends before
//! them and reads as their default. (A peer older than a field refuses a message that holds
//! it: bytes after the message are a decode error.)

use serde::Deserialize;
use serde::de::{Deserializer, Error, SeqAccess, Visitor};

use super::BandwidthClass;

/// The class byte, or foreground when the message ends first. (Postcard fails to read a
/// `u8` only at the end of the input.)
pub(super) fn class_or_foreground<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BandwidthClass, D::Error> {
    match u8::deserialize(d) {
        Err(_) => Ok(BandwidthClass::Foreground),
        Ok(byte) => BandwidthClass::from_wire(byte)
            .ok_or_else(|| D::Error::custom(format!("unknown bandwidth class {byte}"))),
    }
}

/// A flag byte (0 or 1), or false when the message ends first.
pub(super) fn flag_or_false<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match u8::deserialize(d) {
        Err(_) => Ok(false),
        Ok(0) => Ok(false),
        Ok(1) => Ok(true),
        Ok(byte) => Err(D::Error::custom(format!("flag byte {byte}, not 0 or 1"))),
    }
}

/// An `Option<T>` as postcard writes it (tag byte 0 or 1, then the value), or `None` when
/// the message ends before the tag; a value that does not decode is an error.
pub(super) fn option_or_none<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    struct Tagged<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Tagged<T> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an option tag and its value")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            match seq.next_element::<u8>() {
                Err(_) | Ok(None) | Ok(Some(0)) => Ok(None),
                Ok(Some(1)) => Ok(Some(
                    seq.next_element::<T>()?
                        .ok_or_else(|| A::Error::custom("the value ends early"))?,
                )),
                Ok(Some(tag)) => Err(A::Error::custom(format!("option tag {tag}, not 0 or 1"))),
            }
        }
    }
    d.deserialize_tuple(usize::MAX, Tagged(std::marker::PhantomData))
}

/// A `Vec<T>` as postcard writes it (count, items), or empty when the message ends
/// before the count; an item that does not decode is an error.
pub(super) fn vec_or_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    struct Items<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for Items<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a count and items")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let Ok(Some(count)) = seq.next_element::<u64>() else {
                return Ok(Vec::new());
            };
            let mut items = Vec::with_capacity(usize::try_from(count.min(64)).unwrap_or(64));
            for _ in 0..count {
                let item = seq
                    .next_element::<T>()?
                    .ok_or_else(|| A::Error::custom("items end early"))?;
                items.push(item);
            }
            Ok(items)
        }
    }
    d.deserialize_tuple(usize::MAX, Items(std::marker::PhantomData))
}
