"""The Qt views of ``labscope gui``: nodes table, plots, events, files and the generic update panel.

Each view is a QWidget fed by the main window with decoded payloads; none of
them touches a socket.
"""
