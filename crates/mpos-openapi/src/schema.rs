//! JSON Schemas (the OpenAPI 3.0 dialect) of protobuf messages and enums, following the
//! proto3 JSON mapping that pbjson implements.

use std::collections::{BTreeMap, HashMap};

use prost_reflect::{
    DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, OneofDescriptor,
};
use serde_json::{Map, Value, json};

/// The `$ref` prefix of component schemas.
pub(crate) const SCHEMA_REF_PREFIX: &str = "#/components/schemas/";

/// Collects the component schemas of every message and enum reachable from the roots.
pub(crate) struct SchemaSet<'a> {
    pool: &'a DescriptorPool,
    /// Finished schemas by full protobuf name.
    schemas: BTreeMap<String, Value>,
    /// Names referenced but not yet built.
    pending: Vec<Pending>,
    /// Per proto file: source-info path to its comment.
    comments: HashMap<String, HashMap<Vec<i32>, String>>,
}

enum Pending {
    Message(MessageDescriptor),
    Enum(EnumDescriptor),
}

impl<'a> SchemaSet<'a> {
    pub(crate) fn new(pool: &'a DescriptorPool) -> Self {
        let comments = pool
            .files()
            .map(|file| {
                let by_path = file
                    .file_descriptor_proto()
                    .source_code_info
                    .iter()
                    .flat_map(|info| &info.location)
                    .filter_map(|location| {
                        let text = location
                            .leading_comments
                            .as_deref()
                            .or(location.trailing_comments.as_deref())
                            .map(clean_comment)
                            .filter(|text| !text.is_empty())?;
                        Some((location.path.clone(), text))
                    })
                    .collect();
                (file.name().to_owned(), by_path)
            })
            .collect();
        Self {
            pool,
            schemas: BTreeMap::new(),
            pending: Vec::new(),
            comments,
        }
    }

    /// The schema of a message as a body: a well-known type inline, any other message as a
    /// reference to its component schema, which is built with everything it reaches.
    pub(crate) fn message_body(&mut self, message: &MessageDescriptor) -> Value {
        let schema = self.message_reference(message);
        self.drain();
        schema
    }

    /// The component schemas built so far, by full protobuf name.
    pub(crate) fn into_schemas(self) -> BTreeMap<String, Value> {
        self.schemas
    }

    /// The descriptor pool.
    pub(crate) fn pool(&self) -> &DescriptorPool {
        self.pool
    }

    fn drain(&mut self) {
        while let Some(next) = self.pending.pop() {
            match next {
                Pending::Message(message) => {
                    if !self.schemas.contains_key(message.full_name()) {
                        // Reserve the name first: a recursive message references itself.
                        self.schemas
                            .insert(message.full_name().to_owned(), Value::Null);
                        let schema = self.message_schema(&message);
                        self.schemas.insert(message.full_name().to_owned(), schema);
                    }
                }
                Pending::Enum(enumeration) => {
                    if !self.schemas.contains_key(enumeration.full_name()) {
                        let schema = self.enum_schema(&enumeration);
                        self.schemas
                            .insert(enumeration.full_name().to_owned(), schema);
                    }
                }
            }
        }
    }

    fn message_reference(&mut self, message: &MessageDescriptor) -> Value {
        if let Some(schema) = well_known_message(message.full_name()) {
            return schema;
        }
        if !self.schemas.contains_key(message.full_name()) {
            self.pending.push(Pending::Message(message.clone()));
        }
        reference(message.full_name())
    }

    fn enum_reference(&mut self, enumeration: &EnumDescriptor) -> Value {
        if enumeration.full_name() == "google.protobuf.NullValue" {
            return json!({ "nullable": true, "enum": [null] });
        }
        if !self.schemas.contains_key(enumeration.full_name()) {
            self.pending.push(Pending::Enum(enumeration.clone()));
        }
        reference(enumeration.full_name())
    }

    fn comment(&self, file: &str, path: &[i32]) -> Option<&str> {
        self.comments
            .get(file)
            .and_then(|by_path| by_path.get(path))
            .map(String::as_str)
    }

    fn message_schema(&mut self, message: &MessageDescriptor) -> Value {
        let file = message.parent_file();
        let mut schema = Map::new();
        schema.insert("type".into(), json!("object"));
        if let Some(text) = self.comment(file.name(), message.path()) {
            schema.insert("description".into(), json!(text));
        }
        let mut properties = Map::new();
        for field in message.fields() {
            let property = self.field_schema(&field);
            properties.insert(field.json_name().to_owned(), property);
        }
        if !properties.is_empty() {
            schema.insert("properties".into(), Value::Object(properties));
        }
        Value::Object(schema)
    }

    fn field_schema(&mut self, field: &FieldDescriptor) -> Value {
        let mut schema = if field.is_map() {
            let value_schema = match field.kind() {
                Kind::Message(entry) => self.single_schema(&entry.map_entry_value_field()),
                // A map field is always of its entry message; keep the field usable anyway.
                _ => self.single_schema(field),
            };
            json!({ "type": "object", "additionalProperties": value_schema })
        } else if field.is_list() {
            json!({ "type": "array", "items": self.single_schema(field) })
        } else {
            self.single_schema(field)
        };

        let mut notes = Vec::new();
        if let Some(text) = self.comment(field.parent_file().name(), field.path()) {
            notes.push(text.to_owned());
        }
        if let Some(oneof) = field
            .containing_oneof()
            .filter(|oneof| !oneof.is_synthetic())
        {
            notes.push(oneof_note(&oneof));
        }
        let deprecated = field
            .field_descriptor_proto()
            .options
            .as_ref()
            .is_some_and(|options| options.deprecated());
        if notes.is_empty() && !deprecated {
            return schema;
        }
        if schema.get("$ref").is_some() {
            // OpenAPI 3.0 ignores the siblings of a `$ref`: wrap it to carry a description.
            schema = json!({ "allOf": [schema] });
        }
        if let Value::Object(object) = &mut schema {
            if !notes.is_empty() {
                object.insert("description".into(), json!(notes.join("\n\n")));
            }
            if deprecated {
                object.insert("deprecated".into(), json!(true));
            }
        }
        schema
    }

    /// The schema of one value of the field (an element of a repeated field).
    fn single_schema(&mut self, field: &FieldDescriptor) -> Value {
        match field.kind() {
            Kind::Double => json!({ "type": "number", "format": "double" }),
            Kind::Float => json!({ "type": "number", "format": "float" }),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                json!({ "type": "integer", "format": "int32" })
            }
            Kind::Uint32 | Kind::Fixed32 => json!({
                "type": "integer",
                "format": "uint32",
                "minimum": 0,
                "maximum": u32::MAX,
            }),
            // 64-bit integers are JSON strings: a double cannot carry them exactly.
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => json!({
                "type": "string",
                "format": "int64",
                "pattern": "^-?[0-9]+$",
            }),
            Kind::Uint64 | Kind::Fixed64 => json!({
                "type": "string",
                "format": "uint64",
                "pattern": "^[0-9]+$",
            }),
            Kind::Bool => json!({ "type": "boolean" }),
            Kind::String => json!({ "type": "string" }),
            Kind::Bytes => json!({ "type": "string", "format": "byte" }),
            Kind::Message(message) => self.message_reference(&message),
            Kind::Enum(enumeration) => self.enum_reference(&enumeration),
        }
    }

    fn enum_schema(&self, enumeration: &EnumDescriptor) -> Value {
        let file = enumeration.parent_file();
        let names: Vec<String> = enumeration
            .values()
            .map(|value| value.name().to_owned())
            .collect();
        let mut description = Vec::new();
        if let Some(text) = self.comment(file.name(), enumeration.path()) {
            description.push(text.to_owned());
        }
        let documented: Vec<String> = enumeration
            .values()
            .filter_map(|value| {
                self.comment(file.name(), value.path())
                    .map(|text| format!("- `{}`: {}", value.name(), text.replace('\n', " ")))
            })
            .collect();
        if !documented.is_empty() {
            description.push(documented.join("\n"));
        }
        let mut schema = Map::new();
        schema.insert("type".into(), json!("string"));
        schema.insert("enum".into(), json!(names));
        if !description.is_empty() {
            schema.insert("description".into(), json!(description.join("\n\n")));
        }
        Value::Object(schema)
    }
}

/// A reference to the component schema of a full protobuf name.
pub(crate) fn reference(full_name: &str) -> Value {
    json!({ "$ref": format!("{SCHEMA_REF_PREFIX}{full_name}") })
}

fn oneof_note(oneof: &OneofDescriptor) -> String {
    let members: Vec<String> = oneof
        .fields()
        .map(|member| format!("`{}`", member.json_name()))
        .collect();
    format!(
        "Member of oneof `{}`: at most one of {} is set.",
        oneof.name(),
        members.join(", ")
    )
}

/// The inline schema of a well-known type with a special JSON form.
fn well_known_message(full_name: &str) -> Option<Value> {
    let schema = match full_name {
        "google.protobuf.Timestamp" => json!({ "type": "string", "format": "date-time" }),
        "google.protobuf.Duration" => json!({
            "type": "string",
            "pattern": "^-?[0-9]+(\\.[0-9]{1,9})?s$",
            "example": "1.5s",
        }),
        "google.protobuf.FieldMask" => json!({ "type": "string", "example": "name,tenantId" }),
        "google.protobuf.Struct" => json!({ "type": "object", "additionalProperties": true }),
        "google.protobuf.Value" => json!({ "nullable": true }),
        "google.protobuf.ListValue" => json!({ "type": "array", "items": { "nullable": true } }),
        "google.protobuf.Empty" => json!({ "type": "object" }),
        "google.protobuf.Any" => json!({
            "type": "object",
            "required": ["@type"],
            "properties": { "@type": { "type": "string" } },
            "additionalProperties": true,
        }),
        "google.protobuf.DoubleValue" => json!({ "type": "number", "format": "double" }),
        "google.protobuf.FloatValue" => json!({ "type": "number", "format": "float" }),
        "google.protobuf.Int64Value" => json!({
            "type": "string",
            "format": "int64",
            "pattern": "^-?[0-9]+$",
        }),
        "google.protobuf.UInt64Value" => json!({
            "type": "string",
            "format": "uint64",
            "pattern": "^[0-9]+$",
        }),
        "google.protobuf.Int32Value" => json!({ "type": "integer", "format": "int32" }),
        "google.protobuf.UInt32Value" => json!({
            "type": "integer",
            "format": "uint32",
            "minimum": 0,
            "maximum": u32::MAX,
        }),
        "google.protobuf.BoolValue" => json!({ "type": "boolean" }),
        "google.protobuf.StringValue" => json!({ "type": "string" }),
        "google.protobuf.BytesValue" => json!({ "type": "string", "format": "byte" }),
        _ => return None,
    };
    Some(schema)
}

/// A source comment without the space after `//` and without blank edge lines.
fn clean_comment(raw: &str) -> String {
    let lines: Vec<&str> = raw
        .lines()
        .map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end())
        .collect();
    lines.join("\n").trim_matches('\n').to_owned()
}

#[cfg(test)]
mod tests {
    use super::clean_comment;

    #[test]
    fn comments_lose_the_leading_space_and_blank_edges() {
        assert_eq!(
            clean_comment(" First line.\n  indented\n\n"),
            "First line.\n indented"
        );
        assert_eq!(clean_comment("\n"), "");
    }
}
