"""The session core: what happens to a `session.start` job from its delivery to its one outcome.

- `intake`: consumes jobs; the only place that acts on a delivery (through `delivery`).
- `manager`: the live sessions of this worker and its capacity; start, stop, adopt, drain.
- `lifecycle`: one session's life: admit, provision, `ready`, follow to its end.
- `outcomes`: how a session ends: its one `ended`/`failed`, retries, releasing, bookkeeping.
- `records`: `SessionRecord`, what a session keeps on the broker, under a lease.
- `claims`: the cross-worker claim on a session (an exclusive queue).
- `reaper` and `adoption`: sessions whose worker died are adopted (live phoenix_rest) or finished.
- `events`, `control`: the events a session publishes; `session.stop` commands.
- `state`, `delivery`: the values they exchange.
"""
