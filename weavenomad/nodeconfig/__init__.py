"""The Nomad agent's configuration on a node: a pure editor that points the Docker driver at an
endpoint while keeping the user's text (:mod:`.edit`, :mod:`.hclscan`, :mod:`.reading`), and the
I/O that finds, backs up, writes and validates the files (:mod:`.files`)."""
