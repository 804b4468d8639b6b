//! A walk over PostgreSQL's whole parse tree that notes what the check compares.
//!
//! pg_query's own node walker skips node kinds (SET arguments, row constructors), and
//! a check that misses a node misses what a smuggled text could hide there. The tree's
//! types all derive `serde::Serialize`, which visits every field of every node by
//! construction; this serializer is driven by those impls and writes nothing: it keeps
//! a stack of the struct, field and variant names it is inside and notes string
//! constants, relation names and function names as it passes them, without building
//! anything per node. Written by hand because no crate offers a "visit through
//! Serialize" walker; recursive, so it runs on the parser threads' large stacks.

use std::fmt;

use serde::ser::{self, Serialize};

use super::Read;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Struct(&'static str),
    Field(&'static str),
    Variant(&'static str),
}

/// Walks `tree` and returns what it holds, as far as the comparison goes.
pub(super) fn observe<T: Serialize>(tree: &T) -> Result<Read, WalkError> {
    let mut observer = Observer {
        read: Read::default(),
        stack: Vec::with_capacity(64),
    };
    tree.serialize(&mut observer)?;
    Ok(observer.read)
}

struct Observer {
    read: Read,
    stack: Vec<Frame>,
}

/// Where a string constant's value sits: `A_Const.val` is the `Sval` variant.
const STRING_CONSTANT: &[Frame] = &[
    Frame::Variant("Sval"),
    Frame::Struct("String"),
    Frame::Field("sval"),
];

/// Where an option's string argument sits (`COPY … (DELIMITER ';')`): PostgreSQL
/// keeps it as a plain string node, not a constant.
const OPTION_ARGUMENT: &[Frame] = &[
    Frame::Struct("DefElem"),
    Frame::Field("arg"),
    Frame::Struct("Node"),
    Frame::Field("node"),
    Frame::Variant("String"),
    Frame::Struct("String"),
    Frame::Field("sval"),
];

/// Where the parts of a called function's name sit.
const FUNCTION_NAME_PART: &[Frame] = &[
    Frame::Struct("FuncCall"),
    Frame::Field("funcname"),
    Frame::Struct("Node"),
    Frame::Field("node"),
    Frame::Variant("String"),
    Frame::Struct("String"),
    Frame::Field("sval"),
];

impl Observer {
    fn note_str(&mut self, value: &str) {
        use Frame::{Field, Struct};
        if self.stack.ends_with(STRING_CONSTANT) || self.stack.ends_with(OPTION_ARGUMENT) {
            self.read.strings.push(value.to_owned());
        } else if self
            .stack
            .ends_with(&[Struct("NotifyStmt"), Field("payload")])
        {
            if !value.is_empty() {
                self.read.strings.push(value.to_owned());
            }
        } else if matches!(
            self.stack.as_slice(),
            [
                ..,
                Struct("RangeVar"),
                Field("catalogname" | "schemaname" | "relname")
            ]
        ) {
            if let Some(name) = self.read.relations.last_mut() {
                if !value.is_empty() {
                    name.push(value.to_owned());
                }
            }
        } else if self.stack.ends_with(FUNCTION_NAME_PART) {
            if let Some(name) = self.read.functions.last_mut() {
                name.push(value.to_owned());
            }
        }
    }

    fn enter_struct(&mut self, name: &'static str) {
        match name {
            "RangeVar" => self.read.relations.push(Vec::new()),
            "FuncCall" => self.read.functions.push(Vec::new()),
            _ => {}
        }
        self.stack.push(Frame::Struct(name));
    }

    fn field<V: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &V,
    ) -> Result<(), WalkError> {
        self.stack.push(Frame::Field(key));
        value.serialize(&mut *self)?;
        self.stack.pop();
        Ok(())
    }

    fn variant<V: Serialize + ?Sized>(
        &mut self,
        variant: &'static str,
        value: &V,
    ) -> Result<(), WalkError> {
        self.stack.push(Frame::Variant(variant));
        value.serialize(&mut *self)?;
        self.stack.pop();
        Ok(())
    }
}

/// The walk never fails on its own; serde needs an error type all the same.
#[derive(Debug)]
pub(super) struct WalkError(String);

impl fmt::Display for WalkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WalkError {}

impl ser::Error for WalkError {
    fn custom<T: fmt::Display>(message: T) -> Self {
        WalkError(message.to_string())
    }
}

/// Scalars carry nothing the check compares.
macro_rules! ignore_scalars {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _: $ty) -> Result<(), WalkError> { Ok(()) })*
    };
}

impl ser::Serializer for &mut Observer {
    type Ok = ();
    type Error = WalkError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    ignore_scalars!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_str(self, v: &str) -> Result<(), WalkError> {
        self.note_str(v);
        Ok(())
    }
    fn serialize_none(self) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), WalkError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), WalkError> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        self.variant(variant, value)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, WalkError> {
        self.stack.push(Frame::Variant(variant));
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, WalkError> {
        Ok(self)
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Self, WalkError> {
        self.enter_struct(name);
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Self, WalkError> {
        self.stack.push(Frame::Variant(variant));
        Ok(self)
    }
}

/// Elements of sequences, tuples and maps are walked in place.
macro_rules! walk_elements {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl ser::$trait for &mut Observer {
            type Ok = ();
            type Error = WalkError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WalkError> {
                value.serialize(&mut **self)
            }
            fn end(self) -> Result<(), WalkError> {
                Ok(())
            }
        })*
    };
}

walk_elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
);

impl ser::SerializeTupleVariant for &mut Observer {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), WalkError> {
        self.stack.pop();
        Ok(())
    }
}

impl ser::SerializeMap for &mut Observer {
    type Ok = ();
    type Error = WalkError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), WalkError> {
        key.serialize(&mut **self)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), WalkError> {
        value.serialize(&mut **self)
    }
    fn end(self) -> Result<(), WalkError> {
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Observer {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), WalkError> {
        self.stack.pop();
        Ok(())
    }
}

impl ser::SerializeStructVariant for &mut Observer {
    type Ok = ();
    type Error = WalkError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), WalkError> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), WalkError> {
        self.stack.pop();
        Ok(())
    }
}
