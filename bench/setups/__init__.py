"""The setups the workloads run through: direct, stunnel, HAProxy, clusterlink.

Each module has one ``start_*`` function (see ``base.StartSetup``) that starts the setup's
processes, waits until an echo goes through and returns where the clients connect.
"""
