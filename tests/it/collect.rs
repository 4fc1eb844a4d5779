//! Tests of `cofferdam collect`.
