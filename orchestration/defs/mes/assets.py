from ..raw import raw_assets

assets = raw_assets("mes")
