//! Stateful service (IA_NA, IA_PD): see issue 4.
