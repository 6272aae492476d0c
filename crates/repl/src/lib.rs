//! dcms-repl (to come)
