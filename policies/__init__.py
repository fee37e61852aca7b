"""infercast policies: pure decision logic. Frozen inputs + explicit `now` -> decision + new state."""
