"""Policy: the decision model, tenant policies merged over the default, evidence, shadow
decisions, reload and backtest."""
