//! The platform's protobuf schema as integrators depend on it, and the changes that would
//! break them.
//!
//! Events are stored and published for years: a consumer decodes today what was written long
//! ago, by field number on the bus (binary protobuf) and by field name in the logs and JSON
//! APIs (the proto3 JSON mapping). So once published, a message's fields and an enum's values
//! keep their number, name, type and cardinality; one removed leaves its number reserved, and a
//! reserved number is never used again. This crate is that rule and nothing else (no I/O):
//!
//! - [`Schema::from_descriptor_set`] reads the schema from an encoded `FileDescriptorSet` (the
//!   one `mpos-proto` builds from `proto/`);
//! - [`Schema::render`] / [`Schema::parse`]: the schema as reviewable text, the form in which
//!   the published schema is kept (`proto/published.txt`);
//! - [`breaking_changes`] lists every change from the published schema to the current one that
//!   would break a consumer. Additions (messages, fields, values) never do.
//!
//! The rules follow buf's `WIRE_JSON` category: wire and JSON compatibility, not source
//! compatibility (a message may move between files of its package).

use std::collections::BTreeMap;
use std::fmt;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

/// A field of a message: what a consumer decodes it by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Field {
    /// Its name (the proto3 JSON mapping's key is derived from it).
    pub name: String,
    /// `single`, `optional` (proto3 `optional`) or `repeated` (maps are repeated entries).
    pub cardinality: String,
    /// A scalar type (`string`, `uint64`, …), `message:<full name>` or `enum:<full name>`.
    pub kind: String,
}

/// A message: its fields by number, and its reserved number ranges (start and end inclusive).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageSchema {
    /// Fields by number.
    pub fields: BTreeMap<i32, Field>,
    /// Reserved numbers, as inclusive ranges.
    pub reserved: Vec<(i32, i32)>,
}

/// An enum: its values by number, and its reserved number ranges (inclusive).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnumSchema {
    /// Value names by number.
    pub values: BTreeMap<i32, String>,
    /// Reserved numbers, as inclusive ranges.
    pub reserved: Vec<(i32, i32)>,
}

/// Every message and enum of a schema, by full name (without a leading dot).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schema {
    /// Messages by full name.
    pub messages: BTreeMap<String, MessageSchema>,
    /// Enums by full name.
    pub enums: BTreeMap<String, EnumSchema>,
}

/// A schema that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The descriptor set does not decode.
    #[error("not a FileDescriptorSet: {0}")]
    Descriptors(String),
    /// A line of the text form is not understood.
    #[error("line {line}: {message}")]
    Text {
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// One change that would break a consumer of the published schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Breaking {
    /// A published message is gone.
    MessageRemoved(String),
    /// A published enum is gone.
    EnumRemoved(String),
    /// A field is gone and its number is not reserved: a later field could take it.
    FieldRemoved {
        /// The message.
        message: String,
        /// The field's number.
        number: i32,
        /// Its published name.
        name: String,
    },
    /// A field's name, cardinality or type changed.
    FieldChanged {
        /// The message.
        message: String,
        /// The field's number.
        number: i32,
        /// The field as published.
        was: Field,
        /// The field now.
        now: Field,
    },
    /// A number the published schema reserved is used again.
    ReservedReused {
        /// The message or enum.
        container: String,
        /// The number.
        number: i32,
    },
    /// An enum value is gone and its number is not reserved.
    ValueRemoved {
        /// The enum.
        enumeration: String,
        /// The value's number.
        number: i32,
        /// Its published name.
        name: String,
    },
    /// An enum value's name changed (JSON carries the name).
    ValueRenamed {
        /// The enum.
        enumeration: String,
        /// The value's number.
        number: i32,
        /// The published name.
        was: String,
        /// The name now.
        now: String,
    },
}

impl fmt::Display for Breaking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MessageRemoved(name) => write!(f, "message {name} was removed"),
            Self::EnumRemoved(name) => write!(f, "enum {name} was removed"),
            Self::FieldRemoved {
                message,
                number,
                name,
            } => write!(
                f,
                "{message}: field {number} ({name}) was removed without reserving its number and name"
            ),
            Self::FieldChanged {
                message,
                number,
                was,
                now,
            } => write!(
                f,
                "{message}: field {number} changed from {} {} {} to {} {} {}",
                was.cardinality, was.kind, was.name, now.cardinality, now.kind, now.name
            ),
            Self::ReservedReused { container, number } => {
                write!(f, "{container}: reserved number {number} is used again")
            }
            Self::ValueRemoved {
                enumeration,
                number,
                name,
            } => write!(
                f,
                "{enumeration}: value {number} ({name}) was removed without reserving its number"
            ),
            Self::ValueRenamed {
                enumeration,
                number,
                was,
                now,
            } => write!(f, "{enumeration}: value {number} was renamed {was} → {now}"),
        }
    }
}

fn is_reserved(ranges: &[(i32, i32)], number: i32) -> bool {
    ranges
        .iter()
        .any(|&(start, end)| start <= number && number <= end)
}

/// Every change from `published` to `current` that would break a consumer of `published`, in
/// name order. Additions are never breaking.
pub fn breaking_changes(published: &Schema, current: &Schema) -> Vec<Breaking> {
    let mut found = Vec::new();
    for (name, was) in &published.messages {
        let Some(now) = current.messages.get(name) else {
            found.push(Breaking::MessageRemoved(name.clone()));
            continue;
        };
        for (&number, field) in &was.fields {
            match now.fields.get(&number) {
                Some(current_field) if current_field != field => {
                    found.push(Breaking::FieldChanged {
                        message: name.clone(),
                        number,
                        was: field.clone(),
                        now: current_field.clone(),
                    });
                }
                Some(_) => {}
                None if is_reserved(&now.reserved, number) => {}
                None => found.push(Breaking::FieldRemoved {
                    message: name.clone(),
                    number,
                    name: field.name.clone(),
                }),
            }
        }
        for &number in now.fields.keys() {
            if is_reserved(&was.reserved, number) {
                found.push(Breaking::ReservedReused {
                    container: name.clone(),
                    number,
                });
            }
        }
    }
    for (name, was) in &published.enums {
        let Some(now) = current.enums.get(name) else {
            found.push(Breaking::EnumRemoved(name.clone()));
            continue;
        };
        for (&number, value) in &was.values {
            match now.values.get(&number) {
                Some(current_value) if current_value != value => {
                    found.push(Breaking::ValueRenamed {
                        enumeration: name.clone(),
                        number,
                        was: value.clone(),
                        now: current_value.clone(),
                    });
                }
                Some(_) => {}
                None if is_reserved(&now.reserved, number) => {}
                None => found.push(Breaking::ValueRemoved {
                    enumeration: name.clone(),
                    number,
                    name: value.clone(),
                }),
            }
        }
        for &number in now.values.keys() {
            if is_reserved(&was.reserved, number) {
                found.push(Breaking::ReservedReused {
                    container: name.clone(),
                    number,
                });
            }
        }
    }
    found
}

fn scalar_name(kind: Type) -> &'static str {
    match kind {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Group => "group",
        Type::Message => "message",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Enum => "enum",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
    }
}

impl Schema {
    /// The schema of an encoded `FileDescriptorSet`.
    pub fn from_descriptor_set(bytes: &[u8]) -> Result<Self, SchemaError> {
        let set = FileDescriptorSet::decode(bytes)
            .map_err(|error| SchemaError::Descriptors(error.to_string()))?;
        let mut schema = Self::default();
        for file in &set.file {
            let package = file.package();
            for message in &file.message_type {
                schema.add_message(package, message);
            }
            for enumeration in &file.enum_type {
                schema.add_enum(package, enumeration);
            }
        }
        Ok(schema)
    }

    fn add_message(&mut self, scope: &str, message: &DescriptorProto) {
        let name = format!("{scope}.{}", message.name());
        let mut schema = MessageSchema::default();
        for field in &message.field {
            let cardinality = if field.label() == Label::Repeated {
                "repeated"
            } else if field.proto3_optional() {
                "optional"
            } else {
                "single"
            };
            let kind = match field.r#type() {
                Type::Message | Type::Group => {
                    format!("message:{}", field.type_name().trim_start_matches('.'))
                }
                Type::Enum => format!("enum:{}", field.type_name().trim_start_matches('.')),
                scalar => scalar_name(scalar).to_owned(),
            };
            schema.fields.insert(
                field.number(),
                Field {
                    name: field.name().to_owned(),
                    cardinality: cardinality.to_owned(),
                    kind,
                },
            );
        }
        // Descriptor ranges end exclusive.
        schema.reserved = message
            .reserved_range
            .iter()
            .map(|range| (range.start(), range.end() - 1))
            .collect();
        for nested in &message.nested_type {
            self.add_message(&name, nested);
        }
        for enumeration in &message.enum_type {
            self.add_enum(&name, enumeration);
        }
        self.messages.insert(name, schema);
    }

    fn add_enum(&mut self, scope: &str, enumeration: &EnumDescriptorProto) {
        let name = format!("{scope}.{}", enumeration.name());
        let schema = EnumSchema {
            values: enumeration
                .value
                .iter()
                .map(|value| (value.number(), value.name().to_owned()))
                .collect(),
            // Enum ranges end inclusive.
            reserved: enumeration
                .reserved_range
                .iter()
                .map(|range| (range.start(), range.end()))
                .collect(),
        };
        self.enums.insert(name, schema);
    }

    /// The schema as text, one line per message, enum, field, value and reserved range, in
    /// name and number order: what `proto/published.txt` holds.
    pub fn render(&self) -> String {
        let mut text = String::new();
        for (name, message) in &self.messages {
            text.push_str(&format!("message {name}\n"));
            for (number, field) in &message.fields {
                text.push_str(&format!(
                    "  field {number} {} {} {}\n",
                    field.name, field.cardinality, field.kind
                ));
            }
            for (start, end) in &message.reserved {
                text.push_str(&format!("  reserved {start} {end}\n"));
            }
        }
        for (name, enumeration) in &self.enums {
            text.push_str(&format!("enum {name}\n"));
            for (number, value) in &enumeration.values {
                text.push_str(&format!("  value {number} {value}\n"));
            }
            for (start, end) in &enumeration.reserved {
                text.push_str(&format!("  reserved {start} {end}\n"));
            }
        }
        text
    }

    /// Reads the text form; lines starting with `#` and blank lines are comments.
    pub fn parse(text: &str) -> Result<Self, SchemaError> {
        enum Current {
            None,
            Message(String),
            Enum(String),
        }
        let mut schema = Self::default();
        let mut current = Current::None;
        for (index, line) in text.lines().enumerate() {
            let error = |message: &str| SchemaError::Text {
                line: index + 1,
                message: message.to_owned(),
            };
            let number = |word: Option<&str>| {
                word.and_then(|word| word.parse::<i32>().ok())
                    .ok_or_else(|| error("expected a number"))
            };
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let mut words = trimmed.split_whitespace();
            match (words.next(), &current) {
                (Some("message"), _) => {
                    let name = words
                        .next()
                        .ok_or_else(|| error("a message needs a name"))?;
                    schema
                        .messages
                        .insert(name.to_owned(), MessageSchema::default());
                    current = Current::Message(name.to_owned());
                }
                (Some("enum"), _) => {
                    let name = words.next().ok_or_else(|| error("an enum needs a name"))?;
                    schema.enums.insert(name.to_owned(), EnumSchema::default());
                    current = Current::Enum(name.to_owned());
                }
                (Some("field"), Current::Message(message)) => {
                    let number = number(words.next())?;
                    let (Some(name), Some(cardinality), Some(kind)) =
                        (words.next(), words.next(), words.next())
                    else {
                        return Err(error("expected: field NUMBER NAME CARDINALITY TYPE"));
                    };
                    if !["single", "optional", "repeated"].contains(&cardinality) {
                        return Err(error("cardinality is single, optional or repeated"));
                    }
                    if let Some(entry) = schema.messages.get_mut(message) {
                        entry.fields.insert(
                            number,
                            Field {
                                name: name.to_owned(),
                                cardinality: cardinality.to_owned(),
                                kind: kind.to_owned(),
                            },
                        );
                    }
                }
                (Some("value"), Current::Enum(enumeration)) => {
                    let number = number(words.next())?;
                    let name = words.next().ok_or_else(|| error("a value needs a name"))?;
                    if let Some(entry) = schema.enums.get_mut(enumeration) {
                        entry.values.insert(number, name.to_owned());
                    }
                }
                (Some("reserved"), Current::Message(name)) => {
                    let range = (number(words.next())?, number(words.next())?);
                    if let Some(entry) = schema.messages.get_mut(name) {
                        entry.reserved.push(range);
                    }
                }
                (Some("reserved"), Current::Enum(name)) => {
                    let range = (number(words.next())?, number(words.next())?);
                    if let Some(entry) = schema.enums.get_mut(name) {
                        entry.reserved.push(range);
                    }
                }
                _ => return Err(error("not a message, enum, field, value or reserved line")),
            }
            if words.next().is_some() {
                return Err(error("unexpected words at the end"));
            }
        }
        Ok(schema)
    }
}
