"""Start the web app: ``python app.py [--host 127.0.0.1] [--port 7860] [--corpus seeds] [--index-dir index]``.

The same as ``rag serve`` (see ``rag serve --help``): opens the index, building or updating it
first when needed, then serves the Gradio app from ``rag.ui``.
"""

import sys

from rag.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
