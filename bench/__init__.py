"""End-to-end benchmark of the station against ocrmypdf on a generated corpus (``python -m bench``)."""
