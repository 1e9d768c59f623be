"""Set up, undo and check a node: ``bootstrap``, ``reset`` and ``doctor``.

observe (:mod:`.observe`, :mod:`.system`) -> decide (:mod:`.plan`, :mod:`.reset`, :mod:`.checks`,
:mod:`.guards`, :mod:`.doctor`; pure) -> show (:mod:`.render`) -> apply with rollback
(:mod:`.apply`). :mod:`.commands` strings them together for the CLI.
"""
