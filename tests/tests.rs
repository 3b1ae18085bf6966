//! The one integration-test binary.
mod util;
