"""The measurement harness of benchmarks/ and the compatibility matrix:
cells run in workers (:mod:`.workers`), timing, peak memory, sizes and
generated doc tables (:mod:`.measure`), operator counts (:mod:`.ops`). Not
part of the installed package: the scripts in benchmarks/ import it as
``harness`` (their folder is on ``sys.path``); tests/conftest.py and the
measurement tools in tools/ add benchmarks/ to ``sys.path``."""
