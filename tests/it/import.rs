//! Tests of `cofferdam import`.
