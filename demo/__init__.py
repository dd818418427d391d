"""The tpd2py demo app, served by ``make demo`` (``python -m tpd2py demo.app:app``)."""
