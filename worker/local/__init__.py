"""Development tools, never on the worker's path: the Customer.io stand-in, the demo, examples, the local fleet.

The stand-in needs the optional ``local`` extra (jsonschema): ``pip install 'cio-fleet[local]'``.
"""
