"""Offline study of fidelity gates on tensors from collect.py: fit a gate on 3 of the 6 validation photos, score it
on the other 3 (both ways), against the fixed `--fidelity 0.5`. Local statistics only (glob 0, the shipped gate's
features) or with the image's means too (glob 1); loss: MSE or the per-image log-MSE (psnr).

    python benchmarks/gate_study/fit.py VAL.pt REAL.pt
"""
import torch, torch.nn.functional as F, sys
from rvar.eval.metrics import psnr_per_image
torch.manual_seed(0)
rows = torch.load(sys.argv[1]); real = torch.load(sys.argv[2])
def lp(t,k): r=k//2; return F.avg_pool2d(F.pad(t,(r,r,r,r),mode='replicate'),k,1)
LAP=torch.tensor([[0,1,0],[1,-4,1],[0,1,0]],dtype=torch.float32).view(1,1,3,3)
def feats(x,R,T,glob):
    d1=(R-T).abs().mean(1,keepdim=True); d2=(x-T).abs().mean(1,keepdim=True)
    hf=F.conv2d(F.pad(x.mean(1,keepdim=True),(1,1,1,1),mode='replicate'),LAP).abs()
    loc=[lp(d1,3),lp(d1,15),lp(d2,3),lp(d2,15),lp(hf,7)]
    f=[torch.log(v+1e-3) for v in loc]
    if glob:
        f+= [torch.log(v.mean((2,3),keepdim=True)+1e-3).expand_as(v) for v in (d1,d2,hf)]
        f+= [x.std((2,3),keepdim=True).mean(1,keepdim=True).expand_as(d1)]
    f.append(x.mean(1,keepdim=True))
    return torch.cat(f,1)
class Gate(torch.nn.Module):
    def __init__(s,n,glob,hidden):
        super().__init__(); s.glob=glob
        s.l=torch.nn.Sequential(torch.nn.Conv2d(n,hidden,1),torch.nn.GELU(),torch.nn.Conv2d(hidden,2,1)) if hidden else torch.nn.Conv2d(n,2,1)
    def forward(s,x,R,T):
        g=torch.sigmoid(s.l(feats(x,R,T,s.glob))); a,b=g[:,:1],g[:,1:]
        return R + a*(x-T) + b*(T-R)
def stack(rs,key): return torch.stack([r[key] for r in rs])
names=sorted({r['name'] for r in rows}); A=[r for r in rows if r['name'] in names[:3]]; B=[r for r in rows if r['name'] not in names[:3]]
def fit(train,glob,hidden,loss='mse'):
    X,Rr,Tt,C=[stack(train,k) for k in ('x','R','T','clean')]
    n=feats(X[:1],Rr[:1],Tt[:1],glob).shape[1]
    g=Gate(n,glob,hidden); opt=torch.optim.Adam(g.parameters(),lr=0.02)
    for it in range(400):
        i=torch.randint(0,len(X),(16,))
        out=g(X[i],Rr[i],Tt[i])
        l=F.mse_loss(out,C[i],reduction='none').mean((1,2,3))
        l = torch.log(l+1e-5).mean() if loss=='psnr' else l.mean()
        opt.zero_grad(); l.backward(); opt.step()
    return g
def rep(name,g,rs):
    per={}
    with torch.no_grad():
        for r in rs:
            out=g(r['x'][None],r['R'][None],r['T'][None])[0].clamp(0,1)
            p=lambda a: float(psnr_per_image(a[None],r['clean'][None])[0])
            per.setdefault(r['deg'],[]).append(p(out)-p(r['x']))
    allg=[v for l in per.values() for v in l]
    print(f"{name:26s} {sum(allg)/len(allg):+.2f} | "+' '.join(f"{k[:6]} {sum(v)/len(v):+.2f}" for k,v in per.items()),flush=True)
class Fid(torch.nn.Module):
    def forward(s,x,R,T): return R+0.5*(x-T)
rep('fid0.5 B',Fid(),B); rep('fid0.5 A',Fid(),A)
for glob in (False, True):
  for hidden in (0,):
    for loss in ('mse','psnr'):
      g=fit(A,glob,hidden,loss); rep(f'A->B glob{int(glob)} h{hidden} {loss}',g,B)
      g=fit(B,glob,hidden,loss); rep(f'B->A glob{int(glob)} h{hidden} {loss}',g,A)
