"""Development tools, not shipped in the wheel: `make demo` (demo.py) and `make docs`
(docs.py). They drive lamina from outside, as its users do."""
