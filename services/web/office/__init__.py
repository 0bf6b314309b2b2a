"""The back office (``/office/``): the partnership's staff, signed in with roles, run
their year in a browser. Like the public site it is a door: each page sends the owning
service's command, with the staff member's identity on the envelope, and renders the
reply. Its own store holds staff accounts and sessions only.

``app`` wires it (the mount behind ``StaffDoor``, and the store and staff commands for
as long as the site runs); ``door`` decides who passes; ``accounts`` holds the rules of
staff accounts; one module of pages per area, forms apart, templates in
``templates/office/`` mirroring them. ``commands`` are the web service's own commands,
which `vestry staff` sends; importing them loads nothing of the site.
"""
