//! Tests of `cofferdam check`.
