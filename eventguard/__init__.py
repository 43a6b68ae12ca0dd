"""The tools around the fleet: the `eventguard` command, the demo, the load generator and
the definitions generator. They sit above ``workers`` (schemas <- common <- workers <- eventguard)
and nothing below imports them."""
