//! `testkit`: support code shared by Porchlight's integration tests (`tests/integration`) and
//! benchmarks (`benches/`).
//!
//! - [`browser`]: a minimal Chrome DevTools Protocol client driving a headless Chromium, for
//!   end-to-end tests of the widget and console as a real visitor's browser runs them.

pub mod app;
pub mod browser;
