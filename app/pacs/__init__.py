"""Query and retrieve studies from a PACS (DIMSE and DICOMweb); Qt-free.

:mod:`~app.pacs.servers` describes servers and parses their URLs,
:mod:`~app.pacs.registry` picks the protocol backend (:mod:`~app.pacs.dimse`,
:mod:`~app.pacs.dicomweb`), :mod:`~app.pacs.cache` keeps retrieved studies and
:mod:`~app.pacs.retrieve` ties them together.
"""
