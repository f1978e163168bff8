//! Lab fixture and lab tests (owned by the lab work).
