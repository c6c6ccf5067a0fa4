# PVTv2-B0 backbone; other configs inherit and override fields.
custom_imports = dict(imports=['pvt_mm'], allow_failed_imports=False)
backbone = dict(type='pvt_mm.PVTv2', arch='b0', out_indices=(0, 1, 2, 3))
