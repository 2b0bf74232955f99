"""``custom``: the starting point for a distribution of your own, exactly as the classic guide shows it.

Copy this file to ``dist_<yourtype>.py`` in a ``--distributions-dir`` and fill
in the functions (docs/distributions.md explains each one, and has a complete
example). As shipped it accepts every point and delivers it nowhere.

Sample config block::

    [distributions.mine]
    type = "custom"
    # codes = ["*"]
"""

from collector import dist


class CustomDistribution(dist.Distribution):
    def __init__(self, core):
        super(CustomDistribution, self).__init__(core)

    def configure(self, config):
        self.config = config
        #Read In Configuration Details Here

    def isConnected(self):
        #Return 'true' if connected
        return True

    def connect(self):
        #Retrurn 'true' if connection is successful
        return True

    def sendData(self, code, value):
        #This actually QUEUES data. If you need to re-format or manipulate data
        # before adding it to the queue, here's where you do that.
        self.queueData([str(code),str(value)])

    def sendUpdate(self, payload):
        #This is called when the queue processes an individual item added with 'sendData'.
        # You can send this right now if pushing out individual pieces of information.
        # If you're consolidating information to be pushed out in a batch, write the data
        # into memory/storage here.
        return True

    def updateBatchComplete(self):
        #This is called when the queue has been processed. If you're sending batched/
        # consolidated updates, this is the place to transmit them.
        pass
