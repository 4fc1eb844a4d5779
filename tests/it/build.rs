//! Tests of `cofferdam build`.
