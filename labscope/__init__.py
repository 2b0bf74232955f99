"""The ``labscope`` command-line dispatcher and the commands that span packages (demo).

This is the one place that knows every package; it imports a subcommand's
package only when that subcommand runs, so a node without Qt runs the agent.
"""
