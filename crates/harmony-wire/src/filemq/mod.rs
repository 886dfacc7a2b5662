//! FILEMQ v2 (draft rfc/35) messages, encoded as the zeromq/filemq reference implementation does.
