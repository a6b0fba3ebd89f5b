"""The app's entry families, one blueprint each: queue, HTTP (and the policy timer)."""
