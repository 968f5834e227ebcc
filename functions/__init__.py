"""Cloud Function entry points: one module per function, each a few lines that decode the
CloudEvent into a contract, call one flow, and let `_entry` map the outcome to
return (ack) or raise (redeliver)."""
