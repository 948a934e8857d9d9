//! engage
