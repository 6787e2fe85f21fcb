//! Host/guest protocol and agent internals.
