"""Messages owned by the events service, version 1.

The events service's facts arrive with the bookings capability; until then
its stream holds nothing, and this module registers nothing.
"""
