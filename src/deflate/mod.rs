//! permessage-deflate (RFC 7692), sans-IO: the negotiation in the upgrade
//! ([`negotiate`]) and the codec ([`codec`]). tungstenite 0.30 has no
//! extension support (it refuses RSV1), so compressed messages take a path
//! of their own beside it: see `conn` for where frames with RSV1 go.

pub mod codec;
pub mod negotiate;

pub use codec::{compressed_frame, Deflater, InflateError, Inflater};
pub use negotiate::{agree, parse, Agreed, ClientBits, Policy, SyntaxError};

#[cfg(test)]
mod tests;
