"""Authorization of inbound calls: policies compiled into a pure evaluator."""
