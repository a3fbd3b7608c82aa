//! The few calls into the `iso8583` crate the profile and the link make, in one place.
//! Setting a field cannot fail: the codec checks content when the message is encoded.

use iso8583::{Message, Mti};

use crate::LinkError;

/// A new message with `mti` (4 digits).
pub(crate) fn new_message(mti: &str) -> Result<Message, LinkError> {
    Ok(Message::new(Mti::parse(mti)?))
}

/// The message's MTI as 4 digits.
pub(crate) fn mti(message: &Message) -> String {
    message.mti().as_str().to_owned()
}

/// A text field, if present.
pub(crate) fn text(message: &Message, field: u8) -> Option<&str> {
    message.get_text(field)
}

/// A binary field, if present.
pub(crate) fn bytes(message: &Message, field: u8) -> Option<&[u8]> {
    message.get_bytes(field)
}

/// Sets a text field.
pub(crate) fn set_text(message: &mut Message, field: u8, value: &str) {
    message.set_text(field, value);
}

/// Sets a binary field.
pub(crate) fn set_bytes(message: &mut Message, field: u8, value: &[u8]) {
    message.set_bytes(field, value);
}

/// Removes a field (absent: nothing happens).
pub(crate) fn remove(message: &mut Message, field: u8) {
    message.remove(field);
}

/// Whether any field of the secondary bitmap (65–128) is present.
pub(crate) fn has_secondary(message: &Message) -> bool {
    message.fields().any(|(field, _)| field > 64)
}
