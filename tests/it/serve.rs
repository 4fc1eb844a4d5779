//! Tests of `cofferdam serve`.
