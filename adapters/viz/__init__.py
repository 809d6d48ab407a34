"""`lamina viz`: the seed's pictures drawn from lamina's own data.

- source.py: where the data comes from: the read model now, or the log folded to a past seq.
- model.py: what a picture shows (an image's stack, a container's rw layer and process space,
  the layer tree, a container's history), as plain dataclasses.
- dot.py: the pictures as graphviz graphs, rendered to SVG or PNG.
- term.py: the same pictures in the terminal, with rich.

Every module here is imported only by `viz` and `make docs`; graphviz and rich are imported
when a picture is drawn.
"""
