"""ASGI entry point: `uvicorn app:app`, or `python app.py` to serve on HOST:PORT."""

from ytproxy.app import create_app

if __name__ == "__main__":
    from ytproxy.cli import main

    main()
else:
    app = create_app()
