//! GUC knowledge (placeholder, being written).
